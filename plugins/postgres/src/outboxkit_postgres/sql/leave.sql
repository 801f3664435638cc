DELETE FROM {instances} WHERE owner = $1
