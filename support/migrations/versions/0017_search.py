"""search_entry (full-text index), conversation_label, conversation_note

PostgreSQL searches ``search_entry`` through a GIN index on ``to_tsvector('english', text)``; SQLite through
an external-content FTS5 table (porter stemming, as the English configuration) kept in step by triggers.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE search_entry_fts USING fts5(text, content='search_entry', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER search_entry_ai AFTER INSERT ON search_entry BEGIN "
    "INSERT INTO search_entry_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER search_entry_ad AFTER DELETE ON search_entry BEGIN "
    "INSERT INTO search_entry_fts(search_entry_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER search_entry_au AFTER UPDATE ON search_entry BEGIN "
    "INSERT INTO search_entry_fts(search_entry_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO search_entry_fts(rowid, text) VALUES (new.id, new.text); END",
]


def upgrade() -> None:
    op.create_table(
        "search_entry",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("ticket_id", sa.String(32), nullable=True),
        sa.Column("visitor_id", sa.String(256), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ref"),
    )
    op.create_index("ix_search_entry_kind", "search_entry", ["kind"])
    op.create_index("ix_search_entry_conversation_id", "search_entry", ["conversation_id"])
    op.create_index("ix_search_entry_visitor_id", "search_entry", ["visitor_id"])
    op.create_index("ix_search_entry_at", "search_entry", ["at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_search_entry_tsv ON search_entry USING GIN (to_tsvector('english', text))"
        )
    else:
        for statement in SQLITE_FTS:
            op.execute(statement)
    op.create_table(
        "conversation_label",
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "label"),
    )
    op.create_index("ix_conversation_label_label", "conversation_label", ["label"])
    op.create_table(
        "conversation_note",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("author_id", sa.String(32), nullable=True),
        sa.Column("author_name", sa.String(120), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conversation_note_conversation_id", "conversation_note", ["conversation_id"])
    op.create_index("ix_conversation_note_created_at", "conversation_note", ["created_at"])


def downgrade() -> None:
    op.drop_table("conversation_note")
    op.drop_table("conversation_label")
    if op.get_bind().dialect.name != "postgresql":
        for trigger in ("search_entry_ai", "search_entry_ad", "search_entry_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS search_entry_fts")
    op.drop_table("search_entry")
