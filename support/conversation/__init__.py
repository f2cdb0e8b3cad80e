"""A conversation turn, from arrival to reply or handoff: the pure engine and the Redis store."""
