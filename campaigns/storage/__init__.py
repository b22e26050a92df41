"""Storage: the tables, statuses, the store connection, published versions, migrations."""
