"""Persistence: the schema (SQLAlchemy Core), the engine and the migrations.

Everything here is synchronous and fast; callers keep each transaction free of
awaits. No ORM: tables are plain `Table` objects and rows are mappings.
"""
