"""Customer data: export and erasure per customer, and retention (erasure by age)."""
