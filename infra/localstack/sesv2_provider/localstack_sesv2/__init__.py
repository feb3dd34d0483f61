"""SES v2 for LocalStack's community runtime; see plugin.py."""
