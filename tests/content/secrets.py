"""Sample secrets of every built-in kind (fake, well-formed), shared by the content tests."""

from __future__ import annotations

import base64
import json

_JWT_HEAD = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
_JWT_BODY = base64.urlsafe_b64encode(b'{"sub":"alice","exp":1900000000}').rstrip(b"=").decode()

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(["MIIEowIBAAKCAQEAx7u0e9QpX0mJz3Ykq1s2VfWc8N0aB5cD6eF7gH8iJ9kL0mN1o"] * 6)
    + "\n-----END RSA PRIVATE KEY-----"
)

SERVICE_ACCOUNT = json.dumps(
    {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": PEM.replace("RSA ", "") + "\n",
        "client_email": "svc@demo-project.iam.gserviceaccount.com",
    }
)

#: kind -> (text containing the secret, the secret value that must disappear)
SAMPLES: dict[str, tuple[str, str]] = {
    "aws_access_key_id": ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    "aws_secret_access_key": (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    "gcp_oauth_token": (
        "ya29.a0AfH6SMBc1234567890abcdefghij",
        "ya29.a0AfH6SMBc1234567890abcdefghij",
    ),
    "gcp_service_account_key": (
        '"private_key_id": "0123456789abcdef0123456789abcdef01234567"',
        "0123456789abcdef0123456789abcdef01234567",
    ),
    "github_token": (
        "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
        "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    ),
    "gitlab_token": ("glpat-xYz12345678901234567", "xYz12345678901234567"),
    "slack_token": ("xoxb-1234567890-abcdefghijkl", "1234567890-abcdefghijkl"),
    "stripe_key": ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc"),
    "private_key": (PEM, "MIIEowIBAAKCAQEAx7u0e9QpX0mJz3Ykq1s2VfWc8N0aB5cD6eF7gH8iJ9kL0mN1o"),
    "jwt": (f"{_JWT_HEAD}.{_JWT_BODY}.c2lnbmF0dXJlLXZhbHVlLWhlcmU", _JWT_BODY),
    "bearer_token": (
        "Authorization: Bearer abcdefghijklmnop1234567890",
        "abcdefghijklmnop1234567890",
    ),
    "connection_string_password": (
        "postgres://app:s3cr3t-pass@db.internal:5432/app",
        "s3cr3t-pass",
    ),
    "password_assignment": ('password="correct-horse-battery"', "correct-horse-battery"),
    "payment_card": ("4111 1111 1111 1111", "4111 1111 1111 1111"),
}

#: Card numbers that fail Luhn: they must pass through untouched.
NOT_CARDS = ("4111 1111 1111 1112", "5500000000000005", "378282246310006")
