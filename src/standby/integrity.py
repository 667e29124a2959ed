"""Integrity a writer of the bucket cannot forge: documents carry a MAC made with a KMS HMAC key.

The bucket's policy lets the backup task write objects; it does not let it (or anyone who took its
rights) make a manifest the cutover will trust: that takes `kms:GenerateMac` on the backup key, which
only the backup task's role and the operator's have, and the readers check it with `kms:VerifyMac`
before they use the document. Runbook journals are signed the same way with the runbook key, which only
the operator's role may use: a forged journal cannot make `--resume` skip a step. The MAC covers the sha256 of the document's canonical JSON without its `mac` field (KMS takes
at most 4 KB of message).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Final, Protocol

from botocore.exceptions import ClientError

from standby import aws_clients
from standby.aws_errors import AWS_ERRORS, aws_failure, error_code


class Mac(Protocol):
    """What signs and checks documents: KmsMac, or a test's stand-in."""

    def sign(self, document: dict[str, Any]) -> dict[str, Any]: ...
    def problem(self, document: dict[str, Any]) -> str | None: ...


ALGORITHM: Final = "HMAC_SHA_256"
FIELD: Final = "mac"


def _digest(document: dict[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != FIELD}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


class KmsMac:
    """Sign and verify documents with one KMS HMAC key."""

    def __init__(self, key_id: str, region: str | None = None) -> None:
        self.key_id = key_id
        # A key ARN names its region: KMS answers for a key only there (a replica has its own ARN).
        in_arn = key_id.split(":")[3] if key_id.startswith("arn:") and key_id.count(":") >= 5 else None
        self.client: Any = aws_clients.client("kms", in_arn or region)

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """The document with its `mac` field."""
        try:
            answer = self.client.generate_mac(
                Message=_digest(document), KeyId=self.key_id, MacAlgorithm=ALGORITHM
            )
        except AWS_ERRORS as exc:
            raise aws_failure(exc, f"signing with the KMS key {self.key_id}") from None
        return {**document, FIELD: base64.b64encode(answer["Mac"]).decode()}

    def problem(self, document: dict[str, Any]) -> str | None:
        """Why the document cannot be trusted (unsigned, or a MAC that does not match), or None."""
        mac = document.get(FIELD)
        if not isinstance(mac, str) or not mac:
            return "it carries no MAC: it was not written by standby's writer (forged, or written by hand)"
        try:
            self.client.verify_mac(
                Message=_digest(document),
                KeyId=self.key_id,
                MacAlgorithm=ALGORITHM,
                Mac=base64.b64decode(mac),
            )
        except ClientError as exc:
            if error_code(exc) in ("KMSInvalidMacException", "KMSInvalidMac"):
                return "its MAC does not match: it was altered or forged after it was written"
            raise aws_failure(exc, f"verifying with the KMS key {self.key_id}") from None
        except (ValueError, TypeError):
            return "its MAC is not base64: it was altered or forged"
        except AWS_ERRORS as exc:
            raise aws_failure(exc, f"verifying with the KMS key {self.key_id}") from None
        return None
