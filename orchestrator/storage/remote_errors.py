"""Remote failures as one-line user errors that name the path, the endpoint and the fix.

Unreachable endpoint, missing bucket, missing or rejected credentials, access denied: each
becomes a :class:`~ganlode.orchestrator.errors.UserError`. The messages carry no credentials
and no server text (an S3 ``SignatureDoesNotMatch`` reply, for one, echoes the access key id).
"""

from __future__ import annotations

import contextlib
from typing import Iterator
from urllib.parse import urlsplit

from ..errors import UserError
from .fs import endpoint_label, is_remote, redact


def error_code(e: BaseException) -> str | None:
    """The S3 error code behind ``e`` (``NoSuchBucket``, ``AccessDenied``, ...), if any."""
    for exc in (e, e.__cause__, e.__context__):
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code")
    return None


def is_missing_bucket(e: BaseException) -> bool:
    return error_code(e) == "NoSuchBucket" or "bucket does not exist" in str(e).lower()


def missing_bucket(bucket: str, what: str = "") -> UserError:
    """The one message for a bucket that is not there."""
    return UserError(f"bucket {bucket!r} does not exist at {endpoint_label()}{what}: create it, or fix the "
                     "path or --s3-endpoint")


def _unreachable(url: str, action: str, e: BaseException) -> UserError:
    return UserError(
        f"cannot reach the S3 endpoint {endpoint_label()} ({e.__class__.__name__}) while "
        f"{action} {redact(url)}: check --s3-endpoint / AWS_ENDPOINT_URL and the network"
    )


@contextlib.contextmanager
def translate_errors(url: str, action: str) -> Iterator[None]:
    """Turn a remote failure inside the block into a one-line :class:`UserError`.

    For code that calls a filesystem object directly. ``action`` is a gerund ("reading",
    "listing"). A missing key is re-raised as ``FileNotFoundError`` for the caller to judge; a
    missing bucket is a UserError. The message never quotes the server's text.
    """
    if not is_remote(url):
        yield
        return
    import botocore.exceptions as bex

    where = f"{redact(url)} (endpoint {endpoint_label()})"
    try:
        yield
    except (UserError, IsADirectoryError, NotADirectoryError):
        raise
    except FileNotFoundError as e:
        if is_missing_bucket(e):
            raise missing_bucket(urlsplit(url).netloc, f" while {action} {redact(url)}") from None
        raise
    except (bex.NoCredentialsError, bex.PartialCredentialsError, bex.CredentialRetrievalError,
            bex.ProfileNotFound) as e:
        raise UserError(
            f"no usable AWS credentials ({e.__class__.__name__}) while {action} {where}: set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials"
        ) from None
    except PermissionError as e:
        code = error_code(e) or "AccessDenied"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            hint = "the credentials were rejected: check or refresh them"
        else:
            hint = "check that your AWS credentials may use this bucket and prefix"
        raise UserError(f"access denied ({code}) while {action} {where}: {hint}") from None
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ConnectionError,
            bex.HTTPClientError, TimeoutError, ConnectionError) as e:
        raise _unreachable(url, action, e) from None
    except bex.BotoCoreError as e:
        raise UserError(f"S3 request failed ({e.__class__.__name__}) while {action} {where}") from None
    except OSError as e:
        if e.__class__.__name__.startswith("ClientConnect") or "connect" in e.__class__.__name__.lower():
            raise _unreachable(url, action, e) from None
        code = error_code(e) or e.__class__.__name__
        raise UserError(f"S3 request failed ({code}) while {action} {where}") from None
    except ValueError as e:
        raise UserError(f"invalid remote path {redact(url)} ({e.__class__.__name__}): use s3://BUCKET/KEY") from None
