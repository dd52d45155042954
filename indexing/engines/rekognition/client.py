"""The boto3 client, the shared rate limit, and Rekognition's errors as engine errors.

Failure policy, so jobs know what to do:

* throttling, 5xx, timeouts and connection errors -> ``RetryableEngineError``
  (after botocore's adaptive retries gave up): the job retries later;
* no face in a query image -> ``NoFaceError`` (raised by the callers, which
  know when ``InvalidParameter`` means that);
* anything else -> ``EngineError`` with a message safe to show.

A process-shared rate limiter (``ratelimit.RateLimiter`` on the Django cache)
keeps every worker together under ``FACES_REKOGNITION_TPS``.
"""

from __future__ import annotations

import logging
import os
import threading

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError, ParamValidationError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

from ..base import EngineError, RetryableEngineError
from ..ratelimit import RateLimiter

logger = logging.getLogger(__name__)

THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "LimitExceededException",
}
# Requests one process keeps in flight at most (threads and pooled connections).
MAX_IN_FLIGHT = 64
TRANSIENT_CODES = {"InternalServerError", "ServiceUnavailableException", "ServiceUnavailable"}

# Operations share a rate bucket per class; AWS quotas are per API and these
# classes hold the APIs that matter for a bulk import.
OPERATION_CLASSES = {
    "IndexFaces": "index",
    "SearchFaces": "search",
    "SearchFacesByImage": "search",
    "SearchUsersByImage": "search",
    "DetectFaces": "detect",
}


class ResourceMissing(EngineError):
    """Rekognition answered ResourceNotFoundException (collection, face or user)."""


class InvalidParameter(EngineError):
    """Rekognition refused a parameter; for image calls this mostly means no face."""


class InvalidS3Object(EngineError):
    """Rekognition could not read the S3 object (permissions, region, missing)."""


_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()
_limiter = RateLimiter(prefix="faces:rekognition:tps")


def _throttle(event_name: str = "", **kwargs) -> None:
    """botocore ``before-send`` hook: take a slot of the shared rate limit per HTTP attempt."""
    operation = event_name.rsplit(".", 1)[-1]
    rate = float(getattr(settings, "FACES_REKOGNITION_TPS", 5))
    waited = _limiter.acquire(OPERATION_CLASSES.get(operation, "manage"), rate)
    if waited > 1:
        logger.info("Rekognition %s waited %.1fs for the rate limit", operation, waited)


def client_for(region: str, endpoint: str | None, max_attempts: int):
    """One boto3 client per process and configuration (clients are thread-safe).

    The pid is part of the key: a client created before django-q forks its
    workers must not be shared with them (its connection pool would be).
    """
    key = (os.getpid(), region, endpoint, max_attempts)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                config = Config(
                    region_name=region,
                    retries={"mode": "adaptive", "total_max_attempts": max_attempts},
                    connect_timeout=5,
                    read_timeout=30,
                    max_pool_connections=MAX_IN_FLIGHT,
                    user_agent_extra="faces",
                )
                # A Session per client: boto3's default session is not thread-safe.
                client = boto3.session.Session().client(
                    "rekognition", region_name=region, endpoint_url=endpoint or None, config=config
                )
                # before-send fires once per HTTP attempt, retries included.
                client.meta.events.register("before-send.rekognition", _throttle)
                _clients[key] = client
    return client


def configured_client():
    """The boto3 client for the current settings, created on first use."""
    return client_for(
        settings.AWS_REGION,
        settings.AWS_ENDPOINT_URL,
        int(getattr(settings, "FACES_REKOGNITION_MAX_ATTEMPTS", 5)),
    )


def call(client, operation: str, *, ok: tuple[str, ...] = (), **params) -> dict:
    """Call one Rekognition API and translate its errors into engine errors.

    Error codes listed in ``ok`` are expected outcomes and return ``{}``.
    """
    method = getattr(client, xform_name(operation))
    try:
        return method(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ok:
            return {}
        raise _client_error(operation, code, message, status) from exc
    except NoCredentialsError as exc:
        raise EngineError("No AWS credentials are configured for Amazon Rekognition.") from exc
    except ParamValidationError as exc:
        raise EngineError(f"Invalid request to Amazon Rekognition {operation}: {exc}") from exc
    except (BotoConnectionError, HTTPClientError) as exc:  # refused, reset, timeouts
        raise RetryableEngineError(f"Amazon Rekognition could not be reached ({exc}).") from exc
    except TimeoutError as exc:  # our shared rate limiter stayed full
        raise RetryableEngineError(str(exc)) from exc
    except BotoCoreError as exc:
        raise EngineError(f"Amazon Rekognition {operation} failed ({exc}).") from exc


def _client_error(operation: str, code: str, message: str, status: int) -> EngineError:
    """The engine error for an error answer of Rekognition."""
    if code in THROTTLING_CODES:
        return RetryableEngineError("Amazon Rekognition is throttling requests; the job will be retried.")
    if code in TRANSIENT_CODES or status >= 500:
        return RetryableEngineError(f"Amazon Rekognition is unavailable ({code or status}).")
    if code == "ResourceNotFoundException":
        return ResourceMissing(message or "Not found in Amazon Rekognition.")
    if code == "InvalidParameterException":
        return InvalidParameter(message or "Amazon Rekognition refused the request.")
    if code == "InvalidS3ObjectException":
        return InvalidS3Object(message or "Amazon Rekognition could not read the S3 object.")
    if code == "ImageTooLargeException":
        return EngineError("The image is too large for Amazon Rekognition.")
    if code == "InvalidImageFormatException":
        return EngineError("Amazon Rekognition cannot read this image format.")
    if code == "AccessDeniedException":
        return EngineError(f"Access to Amazon Rekognition {operation} was denied; check the IAM policy.")
    return EngineError(f"Amazon Rekognition {operation} failed ({code or status}).")
