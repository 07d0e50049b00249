"""S3ObjectStore: objects in one bucket of any S3 endpoint (MinIO, AWS, moto) via ``minio``.

Transient failures (connection errors, timeouts, HTTP 5xx, ``SlowDown``) are retried with
capped exponential backoff by ``tenacity``; urllib3's own retries are off so that each
attempt against a dead endpoint fails fast. What is left is translated once, in
:func:`map_error`, to the ``clients.errors`` hierarchy with a message naming the endpoint.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import certifi
import tenacity
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from clients.errors import (
    Internal,
    InvalidRequest,
    MinioDBError,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from flight_server.storage.base import ObjectInfo, ObjectStore, validate_key, validate_prefix
from flight_server.storage.local import atomic_file

T = TypeVar("T")

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 30.0
CHUNK = 1024 * 1024
# Objects up to this size go up in one PUT, larger ones in parts of this size. A flushed
# Parquet file is typically tens of MiB: one request instead of a multipart upload
# (initiate + parts + complete) is markedly faster, on moto and on MinIO alike.
PART_SIZE = 64 * 1024 * 1024
AUTH_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"})
TRANSIENT_CODES = frozenset({
    "SlowDown", "SlowDownRead", "SlowDownWrite", "InternalError", "ServiceUnavailable",
    "RequestTimeout", "RequestTimeTooSkewed", "XMinioServerNotInitialized", "OperationTimedOut",
})
INVALID_CODES = frozenset({"InvalidBucketName", "InvalidArgument", "KeyTooLongError", "InvalidObjectName"})


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        return getattr(exc, "_code", None)
    if isinstance(exc, S3Error) and exc.response is not None:
        return getattr(exc.response, "status", None)
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: the network or the server failed, not the request."""
    if isinstance(exc, urllib3.exceptions.SSLError | urllib3.exceptions.LocationValueError):
        return False
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, S3Error) and exc.code in TRANSIENT_CODES:
        return True
    if isinstance(exc, S3Error | ServerError | InvalidResponseError):
        status = _status(exc)
        return status is not None and (status >= 500 or status == 429)
    return False


def _reason(exc: BaseException) -> str:
    """A one-line cause without object reprs or traceback text."""
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}" if exc.message else str(exc.code)
    if isinstance(exc, ServerError | InvalidResponseError):
        return f"HTTP {_status(exc)}"
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:  # the OS error under urllib3's wrappers
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.strerror:
            return cur.strerror
        cur = cur.__cause__ or cur.__context__
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "connection broken"
    return type(exc).__name__


def missing_bucket(bucket: str, endpoint: str) -> str:
    """The bucket vanished while the node runs: it is not recreated behind the operator's back
    (an empty bucket would hide that every committed file is gone); flushes wait for it."""
    return (f"bucket {bucket!r} does not exist at {endpoint}: the node creates its bucket only when it "
            "starts; create or restore the bucket, and flushes resume (unflushed rows stay in the WAL)")


def map_error(
    exc: BaseException, *, endpoint: str, bucket: str, key: str | None = None, attempts: int = 1
) -> MinioDBError:
    """Translate a minio/urllib3 failure into the project's error hierarchy."""
    where = f"S3 endpoint {endpoint} (bucket {bucket!r})"
    if isinstance(exc, S3Error):
        code = exc.code or ""
        if code == "NoSuchKey":
            return NotFound(f"object {key!r} not found in bucket {bucket!r} at {endpoint}")
        if code == "NoSuchBucket":  # an outage to fix, never "this object is gone"
            return Unavailable(missing_bucket(bucket, endpoint))
        if code in AUTH_CODES:
            return Unauthenticated(
                f"{where} rejected the credentials ({code}); check storage.minio.access_key "
                "and storage.minio.secret_key"
            )
        if code in INVALID_CODES:
            return InvalidRequest(f"{where} refused the request: {_reason(exc)}")
    if isinstance(exc, InvalidResponseError) and _status(exc) in (401, 403):
        return Unauthenticated(f"{where} refused access (HTTP {_status(exc)}); check the credentials")
    if is_transient(exc) or isinstance(exc, InvalidResponseError | urllib3.exceptions.HTTPError):
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return Unavailable(f"{where} is unavailable{tries}: {_reason(exc)}")
    if isinstance(exc, ValueError):
        return InvalidRequest(f"{where}: {exc}")
    return Internal(f"{where} failed: {_reason(exc)}")


class S3ObjectStore(ObjectStore):
    """One bucket of an S3 endpoint; creates the bucket at construction if asked."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str | None = None,
        retry_attempts: int = 6,
        retry_max_seconds: float = 8.0,
        create_bucket: bool = True,
        ca_file: str | None = None,
        part_size: int = PART_SIZE,
    ):
        self.endpoint = endpoint
        self.bucket = bucket
        self.url = f"{'s3s' if secure else 's3'}://{endpoint}/{bucket}"
        self._attempts = max(1, int(retry_attempts))
        self._part_size = max(5 * 1024 * 1024, int(part_size))  # S3's minimum part size
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
            retries=False,
            maxsize=16,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_file or certifi.where(),
        )
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=tenacity.wait_exponential_jitter(initial=0.1, max=retry_max_seconds, jitter=0.1),
            retry=tenacity.retry_if_exception(is_transient),
            reraise=True,
        )
        try:
            self._client = Minio(
                endpoint,
                access_key=access_key or None,
                secret_key=secret_key or None,
                secure=secure,
                region=region or None,
                http_client=self._http,
            )
        except ValueError as exc:
            raise InvalidRequest(f"invalid S3 endpoint {endpoint!r}: {exc}") from exc
        if create_bucket:
            self._call(self._ensure_bucket, region=region)

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.url!r})"

    # -- plumbing --------------------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args, key: str | None = None, **kwargs) -> T:
        """Run ``fn`` with retries; translate whatever escapes."""
        retrying = self._retrying.copy()
        try:
            return retrying(fn, *args, **kwargs)
        except (MinioException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, ValueError) as exc:
            attempts = retrying.statistics.get("attempt_number", 1) if is_transient(exc) else 1
            raise map_error(exc, endpoint=self.endpoint, bucket=self.bucket, key=key,
                            attempts=attempts) from exc

    def _ensure_bucket(self, region: str | None) -> None:
        if self._client.bucket_exists(self.bucket):
            return
        try:
            self._client.make_bucket(self.bucket, location=region or None)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    # -- writes ----------------------------------------------------------------------------
    def put_file(self, key: str, path: str | Path) -> int:
        validate_key(key)
        size = os.path.getsize(path)
        self._call(self._client.fput_object, self.bucket, key, str(path), part_size=self._part_size, key=key)
        return size

    def put_bytes(self, key: str, data: bytes) -> int:
        validate_key(key)

        def put() -> None:  # a fresh stream per attempt
            self._client.put_object(self.bucket, key, io.BytesIO(data), len(data), part_size=self._part_size)

        self._call(put, key=key)
        return len(data)

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            self._call(self._client.remove_object, self.bucket, key, key=key)
        except NotFound:
            pass

    def delete_many(self, keys: list[str]) -> None:
        keys = [validate_key(k) for k in keys]
        if not keys:
            return

        def remove() -> None:
            for err in self._client.remove_objects(self.bucket, (DeleteObject(k) for k in keys)):
                if err.code != "NoSuchKey":
                    raise S3Error(None, err.code, err.message, err.name, None, None, self.bucket, err.name)

        self._call(remove)

    # -- reads -----------------------------------------------------------------------------
    def get_bytes(self, key: str) -> bytes:
        validate_key(key)

        def get() -> bytes:
            resp = self._client.get_object(self.bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._call(get, key=key)

    def get_to_file(self, key: str, path: str | Path) -> int:
        """Stream the whole object into a temp file next to ``path``, then rename it."""
        validate_key(key)

        def get() -> int:
            resp = self._client.get_object(self.bucket, key)
            size = 0
            try:
                with atomic_file(path) as f:
                    for chunk in resp.stream(CHUNK):
                        f.write(chunk)
                        size += len(chunk)
            finally:
                resp.close()
                resp.release_conn()
            return size

        return self._call(get, key=key)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        obj = self._call(self._client.stat_object, self.bucket, key, key=key)
        return ObjectInfo(key=key, size=int(obj.size or 0), last_modified=obj.last_modified)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)

        def listing() -> list[ObjectInfo]:  # materialised so a retry never yields twice
            return [
                ObjectInfo(key=o.object_name, size=int(o.size or 0), last_modified=o.last_modified)
                for o in self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
                if o.object_name and not o.is_dir
            ]

        found = self._call(listing)
        found.sort(key=lambda o: o.key)
        return iter(found)

    # -- health ----------------------------------------------------------------------------
    def check(self) -> None:
        if not self._call(self._client.bucket_exists, self.bucket):
            raise Unavailable(missing_bucket(self.bucket, self.endpoint))

    def close(self) -> None:
        self._http.clear()
