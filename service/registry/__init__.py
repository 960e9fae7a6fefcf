"""The registry: SQLAlchemy tables and the queries on them."""
