"""SQL persistence: tables (SQLModel), the async engine, migrations."""
