"""Chalice blueprints: HTTP in, a service call, HTTP out. No boto3, no rules."""
