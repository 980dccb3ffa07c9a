"""Adapters to AWS: the only code that uses boto3."""
