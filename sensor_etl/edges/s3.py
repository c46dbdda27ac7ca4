"""Object storage edge: S3 and S3-compatible stores through boto3 (the ``s3`` extra), as ``inbox.Inbox``.

- Locations are ``config.S3Location`` (``s3://bucket/prefix/``). Endpoint, region and credentials
  come the standard AWS way — environment, shared config and credentials files, instance and task
  roles, ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for an S3-compatible store — through boto3.
- Listing is paginated and, like a folder's scan, takes the "subfolders" too (an object's name is its
  key relative to the inbox prefix: ``tmy3/x.csv``), but not hidden or temporary ones, nor the
  processed and quarantine prefixes when they lie inside the inbox's.
- An object is read streaming into a private temporary file, hashed and text-checked as it arrives
  (memory: one block), so the reader reads it exactly as it reads a local file. A download cut short
  resumes where it stopped (a ranged GET, conditional on the same ETag).
- A move is a copy then a delete, made after the COMMIT. It never overwrites: the target name is
  checked first (``__2``... when taken; a name a report holds is taken) and the copy is conditional
  (``If-None-Match: *``) for stores that honour it. The copy records its origin (the source object
  and its ETag, as metadata), so a move interrupted between copy and delete is finished by the
  delete alone, not copied twice. The delete is conditional on the ETag (``If-Match``) where the
  store supports it, so a newer upload under the same key is never deleted.
- Every request goes through the runner's retry policy (``aws.call``): throttling, 5xx answers and
  connection errors are ``TransientStorageError`` (retried with backoff, like transient database
  errors); access denied, a missing bucket or no credentials are ``FatalStorageError`` (the daemon
  stops); a missing object is ``FileNotFoundError``.
"""

from __future__ import annotations

import errno
import functools
import io
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import quote

from sensor_etl.config import S3Location, Settings, s3_location
from sensor_etl.edges import aws, files, reports
from sensor_etl.edges.aws import NotSupported, Precondition
from sensor_etl.edges.inbox import Fetched, Listing, Retrier
from sensor_etl.errors import FatalStorageError, FileChanged

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef, ListObjectsV2RequestTypeDef

T = TypeVar("T")

BLOCK_BYTES = 1 << 20  # bytes held while an object streams to disk
COPY_LIMIT = 5 << 30  # CopyObject copies up to 5 GiB; above, a multipart copy to a checked name
TEMP_PREFIX = "sensor-etl-object-"  # private download folders: sensor-etl-object-<pid>-<random>
ORIGIN = "sensor-etl-origin"  # metadata on a moved copy: where it came from ("s3://bucket/key etag", URL-quoted)


def client() -> S3Client:
    """An S3 client configured the standard AWS way (``aws.client``)."""
    client: S3Client = aws.client("s3")
    return client


@dataclass(frozen=True)
class S3Object:
    """An object in a bucket as a listing, a HEAD or an event saw it (``inbox.Candidate``); ``name`` is
    its key relative to the prefix it was found under (``tmy3/x.csv`` in the inbox)."""

    bucket: str
    key: str
    name: str
    size: int
    mtime_ns: int
    etag: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def origin(self) -> str:
        """Who this object is, for the copy a move makes of it: its URL and its ETag."""
        return quote(f"{self.url} {self.etag}", safe="")


class Store:
    """An S3 client and the runner's retry policy for each of its requests."""

    page_size = 1000  # keys per listing request (S3's maximum)

    def __init__(self, s3: S3Client, retrying: Retrier) -> None:
        self.s3 = s3
        self.retrying = retrying

    def call(self, what: str, request: Callable[[], T]) -> T:
        return aws.call(self.retrying, what, request)

    def check_bucket(self, bucket: str) -> None:
        """Start-up: the bucket exists and answers us (a HEAD has no error code: 404 and 403 say it)."""
        try:
            self.call(f"check bucket {bucket}", lambda: self.s3.head_bucket(Bucket=bucket))
        except FileNotFoundError as exc:
            raise FatalStorageError(f"bucket {bucket!r} does not exist (or the endpoint is not the one it is in)") from exc

    def listing(self, location: S3Location) -> Iterator[S3Object]:
        """The objects under ``location`` (all the way down), page by page (each page's request retried on its own)."""
        request: ListObjectsV2RequestTypeDef = {"Bucket": location.bucket, "Prefix": location.prefix, "MaxKeys": self.page_size}
        while True:
            page = self.call(f"list {location}", lambda: self.s3.list_objects_v2(**request))
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.endswith("/"):  # a "folder" marker some stores keep
                    yield S3Object(
                        location.bucket, key, key.removeprefix(location.prefix), item["Size"], _ns(item["LastModified"]), item["ETag"]
                    )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            request["ContinuationToken"] = token

    def head(self, location: S3Location, name: str) -> tuple[S3Object, Mapping[str, str]] | None:
        """The object ``name`` under ``location`` and its metadata, or None when there is no such object."""
        key = location.key(name)
        try:
            found = self.call(f"head {location.url(name)}", lambda: self.s3.head_object(Bucket=location.bucket, Key=key))
        except FileNotFoundError:
            return None
        obj = S3Object(location.bucket, key, name, found["ContentLength"], _ns(found["LastModified"]), found["ETag"])
        return obj, found.get("Metadata", {})

    def exists(self, location: S3Location, name: str) -> bool:
        return self.head(location, name) is not None

    @contextmanager
    def fetched(self, obj: S3Object, encoding: str, keep: int = 0) -> Iterator[Fetched]:
        """The object in a private temporary file named like it, fingerprinted while it downloaded (its
        bytes kept too when at most ``keep``); removed after the block. ``FileChanged`` if the object is
        no longer the one ``obj`` describes."""
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as folder:
            path = Path(folder) / PurePosixPath(obj.name).name
            yield Fetched(path, self.download(obj, path, encoding, keep))

    def download(self, obj: S3Object, path: Path, encoding: str, keep: int = 0) -> files.Fingerprint:
        """Stream ``obj`` into ``path``, hashing as it arrives. A retry after a dropped connection
        asks for the rest only (``Range``), of the same object (``If-Match`` its ETag)."""
        hashing = files.Hashing(encoding, keep)
        with open(path, "wb") as out:

            def rest() -> None:
                response = self.s3.get_object(Bucket=obj.bucket, Key=obj.key, IfMatch=obj.etag, Range=f"bytes={out.tell()}-")
                for block in response["Body"].iter_chunks(BLOCK_BYTES):
                    out.write(block)
                    hashing.feed(block)

            try:
                if obj.size:
                    self.call(f"get {obj.url}", rest)
            except Precondition as exc:
                raise FileChanged(f"{obj.name} was replaced since it was listed") from exc
            size = out.tell()
        if size != obj.size:
            raise FileChanged(f"{obj.name} has {size} bytes where {obj.size} were listed")
        return hashing.result(size, obj.mtime_ns)

    def read_text(self, location: S3Location, name: str) -> str:
        """A small object (a report) as text."""
        body = self.call(
            f"get {location.url(name)}", lambda: self.s3.get_object(Bucket=location.bucket, Key=location.key(name))["Body"].read()
        )
        return body.decode("utf-8")

    def put(self, location: S3Location, name: str, body: BinaryIO) -> None:
        """Write an object whole from a seekable file (rewound for each attempt)."""

        def put() -> None:
            body.seek(0)
            self.s3.put_object(Bucket=location.bucket, Key=location.key(name), Body=body)

        self.call(f"put {location.url(name)}", put)

    def delete(self, obj: S3Object) -> None:
        """Delete ``obj`` if it is still that object (``If-Match``; a plain delete where the store has no
        conditional delete). Deleting what is already gone succeeds."""
        try:
            self.call(f"delete {obj.url}", lambda: self.s3.delete_object(Bucket=obj.bucket, Key=obj.key, IfMatch=obj.etag))
        except NotSupported:
            self.call(f"delete {obj.url}", lambda: self.s3.delete_object(Bucket=obj.bucket, Key=obj.key))
        except (Precondition, FileNotFoundError):
            pass  # replaced by a newer upload (which stays, as new input), or gone already

    def copy(self, obj: S3Object, target: S3Location, name: str) -> None:
        """Copy ``obj`` to ``target``/``name`` with its origin recorded; ``Precondition`` if the name is
        taken (on stores that honour ``If-None-Match``) or ``obj`` changed meanwhile."""
        key = target.key(name)
        metadata = {ORIGIN: obj.origin}
        source: CopySourceTypeDef = {"Bucket": obj.bucket, "Key": obj.key}
        if obj.size <= COPY_LIMIT:
            self.call(
                f"copy {obj.url} to {target.url(name)}",
                lambda: self.s3.copy_object(
                    Bucket=target.bucket,
                    Key=key,
                    CopySource=source,
                    CopySourceIfMatch=obj.etag,
                    IfNoneMatch="*",
                    Metadata=metadata,
                    MetadataDirective="REPLACE",
                ),
            )
            return
        extra = {"Metadata": metadata, "MetadataDirective": "REPLACE", "CopySourceIfMatch": obj.etag}
        self.call(f"copy {obj.url} to {target.url(name)}", lambda: self.s3.copy(source, target.bucket, key, ExtraArgs=extra))

    def move(
        self,
        obj: S3Object,
        target: S3Location,
        *,
        name: str | None = None,
        preferred: str | None = None,
        sidecar: files.Sidecar | None = None,
    ) -> str:
        """Copy ``obj`` into ``target`` as ``name`` (default: its own; ``preferred`` first, then that
        name, then ``__2``...) without overwriting anything, then delete it; returns the name it has
        there. With ``sidecar``, that is written next to the copy first."""
        folder = Prefix(self, target)
        wanted = name or obj.name
        name, copied = self._target(obj, folder, wanted, preferred)
        while not copied:
            if sidecar is not None:
                sidecar.write(name)
            try:
                self.copy(obj, target, name)
                copied = True
            except Precondition as exc:
                if sidecar is not None:
                    sidecar.remove(name)
                current = self.head(S3Location(obj.bucket), obj.key)
                if current is None:
                    raise FileNotFoundError(errno.ENOENT, f"{obj.url} is gone") from exc
                if current[0].etag != obj.etag:
                    raise FileChanged(f"{obj.name} was replaced since it was read") from exc
                name, copied = self._target(obj, folder, wanted, None)  # the name was taken meanwhile: the next free one
        self.delete(obj)
        return name

    def _target(self, obj: S3Object, folder: Prefix, wanted: str, preferred: str | None) -> tuple[str, bool]:
        """(name, already copied): the first name, ``preferred`` first, then ``wanted`` and its numbered
        variants, that is free — or that already holds this very object's copy (a move interrupted
        between its copy and its delete)."""
        for name in itertools.chain([preferred] if preferred else [], files.numbered_names(wanted)):
            if not reports.taken(folder, name):
                return name, False
            if self.origin(folder.location, name) == obj.origin:
                return name, True
        raise AssertionError("numbered_names never ends")

    def origin(self, location: S3Location, name: str) -> str | None:
        """The origin a moved copy records, if ``name`` is one."""
        found = self.head(location, name)
        return found[1].get(ORIGIN) if found else None


def _ns(moment: Any) -> int:
    return int(moment.timestamp() * 1_000_000_000)


@dataclass(frozen=True)
class Prefix:
    """A prefix as a ``reports.Folder``: reports are objects next to the quarantined ones. A PUT is
    whole and durable when it returns, so there is nothing to sync."""

    store: Store
    location: S3Location

    def exists(self, name: str) -> bool:
        return self.store.exists(self.location, name)

    def read_text(self, name: str) -> str | None:
        try:
            return self.store.read_text(self.location, name)
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def write_text(self, name: str, parts: Iterable[str], *, encoding: str = "utf-8", newline: str | None = None) -> None:
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:  # a big rejects file goes to disk, not memory
            text = io.TextIOWrapper(spool, encoding=encoding, newline=newline, write_through=True)
            text.writelines(parts)
            text.detach()
            self.store.put(self.location, name, spool)  # type: ignore[arg-type]

    def remove(self, name: str) -> None:
        self.store.call(
            f"delete {self.location.url(name)}",
            lambda: self.store.s3.delete_object(Bucket=self.location.bucket, Key=self.location.key(name)),
        )

    def sync(self, name: str) -> None:
        pass


class S3Inbox:
    """An inbox prefix with its processed and quarantine prefixes (``inbox.Inbox``). Objects appear
    whole (a PUT is atomic), so nothing needs to settle; FILE_SETTLE_SECONDS does not apply."""

    def __init__(self, store: Store, data: S3Location, processed: S3Location, quarantine: S3Location) -> None:
        self.store, self.data, self.processed, self.quarantine_location = store, data, processed, quarantine
        self.location = data.url()
        self.quarantine_folder = Prefix(store, quarantine)

    @classmethod
    def from_settings(cls, settings: Settings, retrying: Retrier) -> S3Inbox:
        folders = (settings.data_folder, settings.processed_folder, settings.quarantine_folder)
        data, processed, quarantine = (folder for folder in folders if isinstance(folder, S3Location))  # config checked they all are
        remove_stale_downloads()
        return cls(Store(client(), retrying), data, processed, quarantine)

    def __str__(self) -> str:
        return self.location

    def prepare(self) -> None:
        for bucket in dict.fromkeys((self.data.bucket, self.processed.bucket, self.quarantine_location.bucket)):
            self.store.check_bucket(bucket)

    def holds(self, key: str) -> bool:
        """Whether ``key`` is an input object of this inbox (an event may name any key)."""
        return key.startswith(self.data.prefix) and self._takes(key.removeprefix(self.data.prefix), key)

    def _takes(self, name: str, key: str) -> bool:
        """An input name (``*.csv``, in no hidden or temporary "folder"), not in the processed or quarantine prefix."""
        inside = (
            p.prefix for p in (self.processed, self.quarantine_location) if p.bucket == self.data.bucket and p.prefix != self.data.prefix
        )
        folders = PurePosixPath(name).parts[:-1]
        return (
            files.is_input_name(PurePosixPath(name).name)
            and all(map(files.is_scanned_folder, folders))
            and not any(map(key.startswith, inside))
        )

    def object(self, key: str) -> S3Object | None:
        """The inbox object ``key`` as it is now, or None if it is gone (moved already)."""
        found = self.store.head(self.data, key.removeprefix(self.data.prefix))
        return found[0] if found else None

    def scan(self) -> Listing[S3Object]:
        ready = [obj for obj in self.store.listing(self.data) if self._takes(obj.name, obj.key)]
        ready.sort(key=lambda obj: (obj.mtime_ns, obj.name))
        return Listing(ready)

    def present(self, candidate: S3Object) -> bool:
        return True  # a HEAD would cost a request per object: a vanished one shows up as FileNotFoundError when fetched

    def fetch(self, candidate: S3Object, encoding: str, keep: int = 0) -> AbstractContextManager[Fetched]:
        return self.store.fetched(candidate, encoding, keep)

    def check_unchanged(self, candidate: S3Object, fp: files.Fingerprint) -> None:
        current = self.object(candidate.key)
        if current is None or current.etag != candidate.etag:
            raise FileChanged(f"{candidate.name} was replaced or removed while it was being loaded")

    def plan(self, name: str) -> str:
        return self.processed.url(next(n for n in files.numbered_names(name) if not reports.taken(Prefix(self.store, self.processed), n)))

    def holds_copy(self, candidate: S3Object, archived: str) -> bool:
        found = self.store.head(*_split(archived))
        return found is None or found[1].get(ORIGIN) == candidate.origin

    def archive(self, candidate: S3Object, *, preferred: str | None = None, fresh: bool = False) -> str:
        """``fresh`` changes nothing here: the copy checks its target whatever came before."""
        name = preferred.removeprefix(self.processed.url()) if preferred and preferred.startswith(self.processed.url()) else None
        return self.processed.url(self.store.move(candidate, self.processed, preferred=name))

    def batch(self) -> AbstractContextManager[None]:
        return nullcontext()  # each object is copied, then deleted, at once: no durability step to share

    def quarantine(self, candidate: S3Object, report: Mapping[str, Any]) -> str:
        sidecar = reports.ErrorReport(self.quarantine_folder, report)
        return self.quarantine_location.url(self.store.move(candidate, self.quarantine_location, sidecar=sidecar))

    def requeue(self, name: str) -> str | None:
        found = self.store.head(self.quarantine_location, name)
        if found is None or not files.is_input_name(PurePosixPath(name).name):
            return None
        target = self.data.url(self.store.move(found[0], self.data))
        self.quarantine_folder.remove(reports.report_of(self.quarantine_folder, name))
        return target

    def restore(self, archived: str | None, name: str) -> str | None:
        found = self.store.head(*_split(archived)) if archived and archived.startswith("s3://") else None
        return self.data.url(self.store.move(found[0], self.data, name=name)) if found else None


def _split(url: str) -> tuple[S3Location, str]:
    """``s3://bucket/prefix/name`` → (its prefix, the name)."""
    folder, _, name = url.rpartition("/")
    return s3_location(folder + "/"), name


def objects_at(url: str, retrying: Retrier) -> Iterator[tuple[str, Callable[[str], AbstractContextManager[Fetched]]]]:
    """For ``validate``: the object an s3:// URL names, or (a URL ending in ``/``) every input object
    under that prefix; each with how to fetch it (given the ENCODING)."""
    store = Store(client(), retrying)
    folder, name = _split(url)
    if name:
        found = store.head(folder, name)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, f"no object {url}")
        objects: Iterable[S3Object] = [found[0]]
    else:
        objects = (obj for obj in store.listing(folder) if files.is_input_name(PurePosixPath(obj.name).name))
    for obj in objects:
        yield obj.url, functools.partial(store.fetched, obj)


def remove_stale_downloads() -> None:
    """Temporary download folders of processes that are gone (a worker killed mid-download)."""
    for entry in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        pid = entry.name.removeprefix(TEMP_PREFIX).partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
