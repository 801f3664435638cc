"""Embedded defaults that need no server: a SQLite store and a stdout publisher."""
