"""The SQLite layout of the embedded store (schema, connections), below both its writer and its reader."""
