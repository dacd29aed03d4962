"""The SQL index: models, the database handle and the queries the services use."""
