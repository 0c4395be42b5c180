"""The preference centre: a signed, expiring link to a page where a customer sees and changes their consent
per purpose and channel, withdraws it all, or asks for a copy or the erasure of their data."""
