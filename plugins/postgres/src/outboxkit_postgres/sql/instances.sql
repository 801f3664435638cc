SELECT owner FROM {instances} WHERE expires_at > clock_timestamp() ORDER BY owner
