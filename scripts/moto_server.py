#!/usr/bin/env python3
"""Local AWS test server for Estate: moto 5.2.5 in server mode, patched so that
the AWS SDK for Rust accepts its S3 responses.

Usage (from the repo root, after scripts/setup.sh):

    .venv/bin/python scripts/moto_server.py --host 127.0.0.1 --port 0

One server answers every service (S3, S3 Control, STS, Organizations, SQS,
IAM, EventBridge, ...): moto routes each request by the SigV4 credential
scope of its Authorization header. The server runs in the foreground and
prints exactly one line, ``READY <port>``, to stdout (flushed) once its socket
accepts connections; with ``--port 0`` it picks a free port itself and prints
the real one. SIGTERM/SIGINT stop it with exit code 0.

Rust SDK notes: use force_path_style(true) for S3 (virtual-host names like
bucket.127.0.0.1 do not resolve). S3 Control's endpoint rules prepend
"{AccountId}." to a custom endpoint's host; send it to http://127.0.0.1:PORT
instead (custom endpoint resolver): moto routes any SigV4-signed request
(scope service "s3") whose path starts with /v20180820/ to S3 Control,
whatever the Host, and takes the account from x-amz-account-id, which must
equal the caller's account (else AccessDenied, as in AWS).

Options:
  --initial-no-auth-action-count N
                enforce IAM identity policies (and SigV4 signatures) after the
                first N authenticated requests (moto's
                INITIAL_NO_AUTH_ACTION_COUNT; default: never). Simpler and
                per server: set up users/roles/policies with auth off, then
                POST /moto-api/reset-auth with body "0" (enforce from now on)
                or "inf" (off again), Content-Type application/json. Once on,
                only keys moto issued (iam CreateAccessKey, sts AssumeRole)
                are accepted.
  --no-patch    serve moto's responses unpatched (for comparison only); the
                speedups, which change no response, stay.
  --verbose     log every request to stderr.

Why the patches: the Rust SDK's rest-xml deserializers check that the
document's root element is the one the Smithy model names (e.g.
``invalid root, expected VersioningConfiguration got ...``). moto 5.2.x
serializes S3 outputs from botocore's JSON model, which does not carry the
Smithy ``@xmlName`` of output structures, so for operations whose output has
no payload member moto falls back to ``<{Operation}Response>`` unless its own
table (moto/s3/2006-03-01/service-2.moto-extras.json.gz, "resultWrapper")
names the root; that table lacks GetBucketVersioning, ListParts and
ListBucketInventoryConfigurations. The table
``S3_ROOT_FIXES`` below renames those roots, for exactly the operations
that were observed to be wrong (see scripts/moto_check.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Correct root elements, keyed by S3 operation name. Each entry was verified
# against moto 5.2.5 (what moto emits) and against the Rust SDK's generated
# deserializers in aws-sdk-s3 1.157 (what S3 emits and the SDK requires).
S3_ROOT_FIXES: dict[str, tuple[str, str]] = {
    # moto: <GetBucketVersioningResponse><Status>Enabled</Status></...>
    # S3:   <VersioningConfiguration><Status>Enabled</Status></...>
    "GetBucketVersioning": ("GetBucketVersioningResponse", "VersioningConfiguration"),
    # moto: <ListPartsResponse><Bucket>..</Bucket>..<Part>..</Part></...>
    # S3:   <ListPartsResult>...</ListPartsResult>
    "ListParts": ("ListPartsResponse", "ListPartsResult"),
    # moto: <ListBucketInventoryConfigurationsResponse><InventoryConfiguration>..
    # S3:   <ListInventoryConfigurationsResult><InventoryConfiguration>..
    "ListBucketInventoryConfigurations": (
        "ListBucketInventoryConfigurationsResponse",
        "ListInventoryConfigurationsResult",
    ),
}
# Verified correct in moto 5.2.5 (no patch): ListBuckets, GetBucketLocation,
# GetBucketTagging, GetBucketEncryption, GetPublicAccessBlock, GetBucketAcl,
# GetBucketOwnershipControls, GetBucketPolicy (raw JSON body),
# GetBucketPolicyStatus, GetBucketReplication, ListObjectsV2,
# ListObjectVersions, ListMultipartUploads, HeadObject (no body),
# GetBucketInventoryConfiguration, s3control GetPublicAccessBlock; error
# bodies (<Error> for S3, <ErrorResponse><Error> for S3 Control).


def canonical_id(account_id: str) -> str:
    """Per-account canonical user ID (64 hex digits, like S3's).

    moto 5.2.5 uses one constant for every account and, worse, two different
    constants: ListBuckets' Owner/ID is "bcaf1ffd86f41161ca5fb16fd081034f"
    while ACL owners/grantees are "75aa57f0...ba06a". Real S3 has one ID per
    account, the same in ListBuckets and in ACLs; Estate maps ACL grantees to
    accounts through it."""
    import hashlib

    return hashlib.sha256(f"estate-moto-canonical-user:{account_id}".encode()).hexdigest()


def apply_patches() -> list[str]:
    """Monkeypatch moto at import time. Returns a description per patch."""
    import base64

    from moto.core import serialize as moto_serialize
    from moto.core.responses import ActionResult
    from moto.s3 import models as s3_models
    from moto.s3.responses import S3Response

    applied: list[str] = []

    # 1. Root elements (table above).
    s3_serializer = moto_serialize.S3Serializer
    original_serialize_body = s3_serializer._serialize_body

    def _serialize_body(self, body):  # type: ignore[no-untyped-def]
        op = getattr(getattr(self, "operation_model", None), "name", None)
        fix = S3_ROOT_FIXES.get(op) if op else None
        if fix is not None and isinstance(body, dict) and len(body) == 1:
            wrong, right = fix
            if wrong in body:
                body = {right: body[wrong]}
        return original_serialize_body(self, body)

    s3_serializer._serialize_body = _serialize_body  # type: ignore[method-assign]
    for op, (wrong, right) in S3_ROOT_FIXES.items():
        applied.append(f"s3 {op}: root <{wrong}> -> <{right}>")

    def bucket_owner_account(resp: S3Response) -> str:
        entry = s3_models.s3_backends.bucket_accounts.get(getattr(resp, "bucket_name", None) or "")
        return entry[1] if entry else resp.current_account

    # 2. ListBuckets. moto: no <BucketRegion>, ignores continuation-token and
    # truncates at max-buckets without a <ContinuationToken> (so a paginating
    # client silently misses buckets), constant 32-hex Owner ID. S3: every
    # <Bucket> has <BucketRegion>, buckets sorted by name, <ContinuationToken>
    # while more remain, <Prefix> echoed, Owner ID = the account's canonical ID.
    def all_buckets(self):  # type: ignore[no-untyped-def]
        self.data["Action"] = "ListAllMyBuckets"
        self._authenticate_and_authorize_s3_action()
        prefix = self._get_param("prefix")
        region = self._get_param("bucket-region")
        max_buckets = self._get_param("max-buckets")
        token = self._get_param("continuation-token")
        buckets = sorted(self.backend.list_buckets(prefix=prefix, bucket_region=region, max_buckets=None),
                         key=lambda b: b.name)
        if token:
            after = base64.urlsafe_b64decode(token.encode()).decode()
            buckets = [b for b in buckets if b.name > after]
        next_token = None
        # S3 pages at max-buckets; without it, at 10,000 once bucket-region, prefix or
        # continuation-token is given; a bare call lists every bucket.
        page = int(max_buckets) if max_buckets else (10_000 if (prefix or region or token) else None)
        if page is not None and len(buckets) > page:
            buckets = buckets[:page]
            next_token = base64.urlsafe_b64encode(buckets[-1].name.encode()).decode()
        # One line per page, so that a test can show that a listing took several pages.
        print(f"moto_server: ListBuckets page of {len(buckets)} (continuation-token: {'yes' if token else 'no'}, "
              f"more: {'yes' if next_token else 'no'})", file=sys.stderr, flush=True)
        result = {
            "Owner": {"ID": canonical_id(self.current_account), "DisplayName": "webfile"},
            "Buckets": [
                {"Name": b.name, "CreationDate": b.creation_date_ISO8601, "BucketRegion": b.region_name}
                for b in buckets
            ],
        }
        if next_token:
            result["ContinuationToken"] = next_token
        if prefix:
            result["Prefix"] = prefix
        self.data["Action"] = "ListBuckets"
        return self.serialized(ActionResult(result))

    S3Response.all_buckets = all_buckets  # type: ignore[method-assign]
    applied.append("s3 ListBuckets: +BucketRegion, +ContinuationToken pagination, per-account Owner ID")

    # 3. ACLs (GetBucketAcl/GetObjectAcl). moto: Owner ID and the owner's
    # default FULL_CONTROL grantee are the constant "75aa57f0...ba06a" for
    # every account, and each internal grant is serialized with only its
    # first grantee and first permission, so the canned ACL
    # "public-read-write" (AllUsers: READ and WRITE) reads back as READ only.
    # S3: the bucket owner's canonical ID, and one <Grant> per grantee and
    # permission. Explicit grants to other IDs are left alone.
    def _acl_to_dict(self, acl):  # type: ignore[no-untyped-def]
        owner = canonical_id(bucket_owner_account(self))
        grants = []
        for grant in acl.grants:
            for grantee in grant.grantees:
                grantee_id = grantee.id or None
                if grantee_id == s3_models.OWNER:
                    grantee_id = owner
                for permission in grant.permissions:
                    grants.append(
                        {
                            "Grantee": {
                                "Type": grantee.type,
                                "URI": grantee.uri or None,
                                "ID": grantee_id,
                                "DisplayName": grantee.display_name or None,
                            },
                            "Permission": permission,
                        }
                    )
        return {"Owner": {"ID": owner, "DisplayName": "webfile"}, "Grants": grants}

    S3Response._acl_to_dict = _acl_to_dict  # type: ignore[method-assign]

    # 4. SSE-C (PutObject with x-amz-server-side-encryption-customer-*). moto: accepts the
    # headers and forgets them; HeadObject answers 200 without any encryption header. S3:
    # HeadObject without the customer key answers 400 Bad Request, and with it echoes
    # x-amz-server-side-encryption-customer-algorithm. Remember the algorithm on the key.
    sse_c_header = "x-amz-server-side-encryption-customer-algorithm"
    original_key_put = S3Response._key_response_put

    def _key_response_put(self, query, key_name):  # type: ignore[no-untyped-def]
        result = original_key_put(self, query, key_name)
        algorithm = self.headers.get(sse_c_header)
        if algorithm and not query.get("uploadId"):
            key = self.backend.get_object(self.bucket_name, key_name)
            if key is not None:
                key.estate_sse_customer_algorithm = algorithm
        return result

    original_head = S3Response.head_object

    def head_object(self, bucket_name, query, key_name, headers):  # type: ignore[no-untyped-def]
        try:
            key = self.backend.get_object(bucket_name, key_name)
        except Exception:  # noqa: BLE001 - moto's own errors surface from the original below
            key = None
        algorithm = getattr(key, "estate_sse_customer_algorithm", None)
        if algorithm and not headers.get(sse_c_header):
            return 400, {}, ""
        status, response_headers, body = original_head(self, bucket_name, query, key_name, headers)
        if algorithm:
            response_headers[sse_c_header] = algorithm
        return status, response_headers, body

    S3Response._key_response_put = _key_response_put  # type: ignore[method-assign]
    S3Response.head_object = head_object  # type: ignore[method-assign]
    applied.append("s3 PutObject/HeadObject: SSE-C remembered; HeadObject without the key answers 400")

    # 5. IAM action names of bucket subresources, with IAM authorization on. moto: every GET
    # of a subresource missing from its ACTION_MAP is authorized as s3:ListBucket (and the
    # publicAccessBlock entry is spelled `public_access_block`, which never matches). AWS:
    # each has its own action.
    from moto.s3 import responses as s3_responses

    s3_responses.ACTION_MAP["BUCKET"]["GET"].update(
        {
            "encryption": "GetEncryptionConfiguration",
            "publicAccessBlock": "GetBucketPublicAccessBlock",
            "ownershipControls": "GetBucketOwnershipControls",
            "replication": "GetReplicationConfiguration",
            "inventory": "GetInventoryConfiguration",
        }
    )
    applied.append("s3 IAM actions: encryption, publicAccessBlock, ownershipControls, replication, inventory")

    # 6. S3 Control GetPublicAccessBlock with IAM authorization on. moto: never checks the
    # caller's identity policies for S3 Control. AWS: the call needs
    # s3:GetAccountPublicAccessBlock and is denied otherwise.
    from moto.iam.access_control import S3IAMRequest
    from moto.s3control.responses import S3ControlResponse

    original_get_pab = S3ControlResponse.get_public_access_block

    def get_public_access_block(self):  # type: ignore[no-untyped-def]
        # Authorize under IAM's name for the call, then serialize under the operation's own.
        self._get_action = lambda: "GetAccountPublicAccessBlock"
        try:
            self._authenticate_and_authorize_action(S3IAMRequest, "*")
        finally:
            del self._get_action
        return original_get_pab(self)

    S3ControlResponse.get_public_access_block = get_public_access_block  # type: ignore[method-assign]
    applied.append("s3control GetPublicAccessBlock: authorized as s3:GetAccountPublicAccessBlock")
    applied.append("s3 GetBucketAcl/GetObjectAcl: per-account owner canonical ID, one grant per grantee and permission")
    return applied


def apply_speedups() -> list[str]:
    """Make moto's per-request overhead smaller without changing any response.

    Profiled with py-spy under the 12,000-bucket test (--gil, the thread holding
    the interpreter): about a fifth of moto's time went to routing each request
    by its host (a listing of moto's own package directory, os.listdir and one
    isdir per entry, then its URL patterns in turn), and a twentieth to
    rebuilding a service's error table for every error response (its cache is
    per instance, and an instance is made per error). Neither input changes
    while the server runs, so each answer is computed once. Returns a
    description per speedup.
    """
    from moto.core import errors
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    # A host's backend depends only on the host: moto's package listing and its URL
    # patterns (hundreds of regular expressions, tried in turn) are fixed. moto calls
    # this under its dispatcher's lock, so the table needs no lock of its own.
    routes: dict = {}
    original_route = DomainDispatcherApplication.get_backend_for_host

    def get_backend_for_host(self, host):  # type: ignore[no-untyped-def]
        if host not in routes:
            routes[host] = original_route(self, host)
        return routes[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]

    shared: dict = {}
    original_init = errors.ErrorLookupFactory.__init__

    def init(self):  # type: ignore[no-untyped-def]
        original_init(self)
        self._error_lut_cache = shared

    errors.ErrorLookupFactory.__init__ = init  # type: ignore[method-assign]

    # The account of a request's access key: moto looks in every account's IAM backend in
    # turn, for every request, so that a thousand accounts (the hub benchmark) make each
    # request a thousand times dearer. An access key belongs to one account for good; the
    # account found is remembered, and checked again on each use (a deleted key falls back
    # to moto's search, and its answer).
    from moto.iam import models as iam_models

    owners: dict = {}
    original_owner = iam_models.get_account_id_from

    def get_account_id_from(access_key):  # type: ignore[no-untyped-def]
        account = owners.get(access_key)
        if account is not None:
            backends = iam_models.iam_backends[account]
            if any(access_key in backends[p].access_keys for p in iam_models.PARTITION_NAMES):
                return account
        account = original_owner(access_key)
        if account != iam_models.DEFAULT_ACCOUNT_ID:
            owners[access_key] = account
        return account

    iam_models.get_account_id_from = get_account_id_from

    # werkzeug listens with a backlog of 128 connections. A client that opens more at once (a
    # hub starting a thousand accounts, the SDK's pool growing under load) overflows it; the
    # kernel then drops the SYNs past it, and each dropped client waits a second or more for
    # its retransmission. The kernel caps the backlog at net.core.somaxconn anyway.
    from werkzeug import serving

    serving.BaseWSGIServer.request_queue_size = 4096
    return [
        "DomainDispatcherApplication.get_backend_for_host: each host routed once",
        "moto.core.errors.ErrorLookupFactory: one error table per service, shared",
        "moto.iam.models.get_account_id_from: each access key's account remembered",
        "werkzeug's listen backlog: 4096 connections instead of 128",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--initial-no-auth-action-count", type=int, default=None)
    parser.add_argument("--no-patch", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    if args.initial_no_auth_action_count is not None:
        # Must be set before moto.settings is imported.
        os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(args.initial_no_auth_action_count)

    import signal

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    for line in apply_speedups():
        print(f"moto_server: sped up {line}", file=sys.stderr)
    if not args.no_patch:
        for line in apply_patches():
            print(f"moto_server: patched {line}", file=sys.stderr)

    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    app = DomainDispatcherApplication(create_backend_app)
    # make_server binds and listens before it returns.
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    port = server.server_port
    # moto builds some URLs (e.g. SQS queue URLs) from MOTO_PORT.
    os.environ["MOTO_PORT"] = str(port)

    def _stop(signum, frame):  # type: ignore[no-untyped-def]
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
