#!/usr/bin/env python3
"""Self-check for scripts/moto_server.py.

Starts the launcher on a free port, exercises every S3 / S3 Control operation
Estate's agent uses through boto3, captures the raw response bodies, and
asserts that each XML root element is the one the AWS SDK for Rust expects
(the names below are the ones aws-sdk-s3 1.157 / aws-sdk-s3control 1.138 check
in their generated deserializers: `start_el.matches("...")`). Also checks
the multi-account behaviour (STS AssumeRole), Organizations and IAM
authorization mode that Estate's tests rely on.

    .venv/bin/python scripts/moto_check.py            # exit 0 when all good
    .venv/bin/python scripts/moto_check.py --no-patch # show what raw moto does
    .venv/bin/python scripts/moto_check.py -v         # print raw XML snippets
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import urllib.request
from typing import Any, Callable

import boto3
import botocore.config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ACCOUNT = "123456789012"
OTHER_ACCOUNT = "111111111111"

# Root element the Rust SDK requires; "" = empty body (HEAD), "{json}" = raw
# string payload (GetBucketPolicy returns the policy document as the body).
# check_roots calls every operation here, in this order.
EXPECTED_ROOT = {
    "ListBuckets": "ListAllMyBucketsResult",
    "GetBucketLocation": "LocationConstraint",
    "GetBucketTagging": "Tagging",
    "GetBucketVersioning": "VersioningConfiguration",
    "GetBucketEncryption": "ServerSideEncryptionConfiguration",
    "GetPublicAccessBlock": "PublicAccessBlockConfiguration",
    "GetBucketAcl": "AccessControlPolicy",
    "GetBucketOwnershipControls": "OwnershipControls",
    "GetBucketPolicy": "{json}",
    "GetBucketPolicyStatus": "PolicyStatus",
    "GetBucketReplication": "ReplicationConfiguration",
    "ListObjectsV2": "ListBucketResult",
    "ListObjectVersions": "ListVersionsResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
    "ListParts": "ListPartsResult",
    "HeadObject": "",
    "GetBucketInventoryConfiguration": "InventoryConfiguration",
    "ListBucketInventoryConfigurations": "ListInventoryConfigurationsResult",
    "s3control:GetPublicAccessBlock": "PublicAccessBlockConfiguration",
}

failures: list[str] = []
VERBOSE = False


def check(cond: bool, what: str) -> None:
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def root_of(body: bytes) -> str:
    text = body.decode("utf-8", "replace").lstrip()
    if not text:
        return ""
    if text.startswith("{"):
        return "{json}"
    m = re.search(r"<([A-Za-z_][\w.-]*)[\s/>]", re.sub(r"^<\?xml[^>]*\?>", "", text).lstrip())
    return m.group(1) if m else "?"


class Recorder:
    """Keeps the raw body of the last response of each operation."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}

    def __call__(self, operation_model: Any, response_dict: dict, **_: Any) -> None:
        prefix = "s3control:" if operation_model.service_model.service_name == "s3control" else ""
        body = response_dict.get("body") or b""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):  # streaming body (GetObject); not used here
            return
        self.bodies[prefix + operation_model.name] = body


def snippet(body: bytes, n: int = 260) -> str:
    text = re.sub(r"\s+", " ", body.decode("utf-8", "replace"))
    return text[:n]


def start_server(args: argparse.Namespace, extra: list[str]) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, os.path.join(HERE, "moto_server.py"), "--host", "127.0.0.1", "--port", "0"]
    if args.no_patch:
        cmd.append("--no-patch")
    cmd += extra
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"launcher did not print READY: {line!r}")
    return proc, int(line.split()[1])


def clients(endpoint: str, rec: Recorder, creds: dict | None = None, region: str = "us-east-1") -> dict:
    kw: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": region,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    if creds:
        kw.update(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds.get("SessionToken"),
        )
    cfg = botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    out = {n: boto3.client(n, config=cfg, **kw) for n in ("s3", "s3control", "sts", "organizations", "iam")}
    out["s3"].meta.events.register("before-parse.s3", rec)
    out["s3control"].meta.events.register("before-parse.s3-control", rec)
    host = endpoint.split("://", 1)[1]

    # The S3 Control endpoint rules prepend "{AccountId}." to the endpoint
    # host even for a custom endpoint; send it to the static endpoint instead
    # (what Estate does with the Rust SDK), so we exercise exactly that.
    def _static_host(request: Any, **_: Any) -> None:
        request.url = re.sub(r"://\d{12}\.", "://", request.url)

    out["s3control"].meta.events.register("before-sign.s3-control", _static_host)
    out["_host"] = host
    return out


def expect_error(fn: Callable[[], Any], code: str, what: str) -> ClientError | None:
    try:
        fn()
    except ClientError as e:
        got = e.response.get("Error", {}).get("Code")
        check(got == code, f"{what}: error {got} (want {code})")
        return e
    check(False, f"{what}: no error (want {code})")
    return None


def setup_buckets(c: dict, acct: str) -> None:
    s3 = c["s3"]
    s3.create_bucket(Bucket="estate-a1")
    s3.create_bucket(Bucket="estate-a1-dst")
    s3.create_bucket(Bucket="estate-bare")
    s3.create_bucket(Bucket="estate-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_tagging(Bucket="estate-a1", Tagging={"TagSet": [{"Key": "env", "Value": "test"}]})
    for b in ("estate-a1", "estate-a1-dst"):
        s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket="estate-a1",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/x"}}]
        },
    )
    s3.put_public_access_block(
        Bucket="estate-a1",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": False,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": False,
        },
    )
    s3.put_bucket_ownership_controls(
        Bucket="estate-a1", OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::estate-a1/*"}
        ],
    }
    s3.put_bucket_policy(Bucket="estate-a1", Policy=json.dumps(policy))
    s3.put_bucket_replication(
        Bucket="estate-a1",
        ReplicationConfiguration={
            "Role": f"arn:aws:iam::{acct}:role/repl",
            "Rules": [
                {
                    "ID": "r1",
                    "Priority": 1,
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "DeleteMarkerReplication": {"Status": "Disabled"},
                    "Destination": {"Bucket": "arn:aws:s3:::estate-a1-dst", "Account": acct},
                }
            ],
        },
    )
    s3.put_bucket_inventory_configuration(
        Bucket="estate-a1",
        Id="inv1",
        InventoryConfiguration={
            "Id": "inv1",
            "IsEnabled": True,
            "IncludedObjectVersions": "All",
            "Schedule": {"Frequency": "Daily"},
            "Destination": {
                "S3BucketDestination": {"Bucket": "arn:aws:s3:::estate-a1-dst", "Format": "CSV", "AccountId": acct}
            },
            "OptionalFields": ["Size", "StorageClass"],
        },
    )
    s3.put_object(Bucket="estate-a1", Key="k1", Body=b"hello")
    s3.put_object(Bucket="estate-a1", Key="k1", Body=b"hello again")
    up = s3.create_multipart_upload(Bucket="estate-a1", Key="big")
    s3.upload_part(Bucket="estate-a1", Key="big", UploadId=up["UploadId"], PartNumber=1, Body=b"x" * 1024)
    c["upload_id"] = up["UploadId"]


def check_roots(c: dict, rec: Recorder) -> None:
    s3, s3c = c["s3"], c["s3control"]
    b = "estate-a1"
    expect_error(
        lambda: s3c.get_public_access_block(AccountId=DEFAULT_ACCOUNT),
        "NoSuchPublicAccessBlockConfiguration",
        "s3control GetPublicAccessBlock before any put",
    )
    if VERBOSE:
        print("     raw:", snippet(rec.bodies.get("s3control:GetPublicAccessBlock", b"")))
    s3c.put_public_access_block(
        AccountId=DEFAULT_ACCOUNT,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": False,
        },
    )
    # Every operation of EXPECTED_ROOT, in its order, through the client method boto3 names
    # after it (GetBucketTagging: get_bucket_tagging); on bucket b unless given other arguments.
    args: dict[str, dict[str, Any]] = {
        "ListBuckets": {},
        "GetBucketLocation": {"Bucket": "estate-eu"},
        "ListParts": {"Bucket": b, "Key": "big", "UploadId": c["upload_id"]},
        "HeadObject": {"Bucket": b, "Key": "k1"},
        "GetBucketInventoryConfiguration": {"Bucket": b, "Id": "inv1"},
        "s3control:GetPublicAccessBlock": {"AccountId": DEFAULT_ACCOUNT},
    }
    results: dict[str, Any] = {}
    for op in EXPECTED_ROOT:
        service, _, name = op.rpartition(":")
        client = s3c if service == "s3control" else s3
        try:
            results[op] = getattr(client, botocore.xform_name(name))(**args.get(op, {"Bucket": b}))
        except ClientError as e:
            check(False, f"{op}: raised {e}")
            continue
        body = rec.bodies.get(op, b"")
        got = root_of(body)
        check(got == EXPECTED_ROOT[op], f"{op}: root <{got}> (want <{EXPECTED_ROOT[op]}>)")
        if VERBOSE:
            print("     raw:", snippet(body))

    # Values that Estate reads.
    loc = results.get("GetBucketLocation", {}).get("LocationConstraint")
    check(loc == "eu-west-1", f"GetBucketLocation estate-eu = {loc!r}")
    s3.get_bucket_location(Bucket="estate-bare")
    raw_use1 = rec.bodies.get("GetBucketLocation", b"")
    check(root_of(raw_use1) == "LocationConstraint", f"GetBucketLocation us-east-1 raw: {snippet(raw_use1, 160)}")
    pab = results.get("s3control:GetPublicAccessBlock", {}).get("PublicAccessBlockConfiguration", {})
    check(pab.get("BlockPublicAcls") is True and pab.get("BlockPublicPolicy") is False, f"s3control PAB values {pab}")
    tags = results.get("GetBucketTagging", {}).get("TagSet")
    check(tags == [{"Key": "env", "Value": "test"}], f"GetBucketTagging TagSet {tags}")
    check(results.get("GetBucketVersioning", {}).get("Status") == "Enabled", "GetBucketVersioning Status Enabled")
    parts = results.get("ListParts", {}).get("Parts", [])
    check(len(parts) == 1, f"ListParts returns 1 part ({len(parts)})")
    ups = results.get("ListMultipartUploads", {}).get("Uploads", [])
    check(len(ups) == 1, f"ListMultipartUploads returns 1 upload ({len(ups)})")
    vers = results.get("ListObjectVersions", {}).get("Versions", [])
    check(len(vers) == 2, f"ListObjectVersions returns 2 versions ({len(vers)})")

    # ListBuckets: BucketRegion and pagination.
    lb = results.get("ListBuckets", {})
    regions = {x["Name"]: x.get("BucketRegion") for x in lb.get("Buckets", [])}
    check(regions.get("estate-eu") == "eu-west-1" and regions.get("estate-a1") == "us-east-1",
          f"ListBuckets BucketRegion {regions}")
    page = s3.list_buckets(MaxBuckets=1)
    raw = rec.bodies["ListBuckets"]
    check("ContinuationToken" in page and len(page["Buckets"]) == 1,
          f"ListBuckets MaxBuckets=1 -> {len(page['Buckets'])} bucket(s), ContinuationToken={page.get('ContinuationToken')!r}")
    if VERBOSE:
        print("     raw:", snippet(raw, 600))
    names = [x["Name"] for x in page["Buckets"]]
    token = page.get("ContinuationToken")
    while token:
        page = s3.list_buckets(MaxBuckets=1, ContinuationToken=token)
        names += [x["Name"] for x in page["Buckets"]]
        token = page.get("ContinuationToken")
    check(sorted(names) == sorted(regions), f"ListBuckets paginated by 1 yields all {len(regions)} buckets")

    # "Not configured" errors on a bare bucket: unwrapped <Error><Code>.
    for op, fn, code in [
        ("GetBucketPolicy", lambda: s3.get_bucket_policy(Bucket="estate-bare"), "NoSuchBucketPolicy"),
        ("GetBucketTagging", lambda: s3.get_bucket_tagging(Bucket="estate-bare"), "NoSuchTagSet"),
        ("GetBucketEncryption", lambda: s3.get_bucket_encryption(Bucket="estate-bare"),
         "ServerSideEncryptionConfigurationNotFoundError"),
        ("GetPublicAccessBlock", lambda: s3.get_public_access_block(Bucket="estate-bare"),
         "NoSuchPublicAccessBlockConfiguration"),
        ("GetBucketReplication", lambda: s3.get_bucket_replication(Bucket="estate-bare"),
         "ReplicationConfigurationNotFoundError"),
        ("GetBucketOwnershipControls", lambda: s3.get_bucket_ownership_controls(Bucket="estate-bare"),
         "OwnershipControlsNotFoundError"),
    ]:
        expect_error(fn, code, f"{op} on bare bucket")
        body = rec.bodies.get(op, b"")
        check(root_of(body) == "Error", f"{op} error body root <{root_of(body)}> (want <Error>)")
        if VERBOSE:
            print("     raw:", snippet(body, 200))
    versioning = s3.get_bucket_versioning(Bucket="estate-bare")
    check("Status" not in versioning, f"GetBucketVersioning never-enabled: {snippet(rec.bodies['GetBucketVersioning'], 200)}")


def check_accounts(endpoint: str, c: dict) -> None:
    sts = c["sts"]
    ident = sts.get_caller_identity()
    check(ident["Account"] == DEFAULT_ACCOUNT, f"default credentials act as {ident['Account']}")
    owner_a = c["s3"].list_buckets()["Owner"]["ID"]
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/EstateAgent", RoleSessionName="estate")[
        "Credentials"
    ]
    rec_b = Recorder()
    cb = clients(endpoint, rec_b, creds)
    ident_b = cb["sts"].get_caller_identity()
    check(ident_b["Account"] == OTHER_ACCOUNT, f"assumed-role credentials act as {ident_b['Account']} ({ident_b['Arn']})")
    cb["s3"].create_bucket(Bucket="estate-b1")
    lb = cb["s3"].list_buckets()
    names_b = [x["Name"] for x in lb["Buckets"]]
    check(names_b == ["estate-b1"], f"ListBuckets as {OTHER_ACCOUNT} sees only its own buckets: {names_b}")
    names_a = [x["Name"] for x in c["s3"].list_buckets()["Buckets"]]
    check("estate-b1" not in names_a, f"ListBuckets as {DEFAULT_ACCOUNT} does not see estate-b1")
    owner_b = lb["Owner"]["ID"]
    check(owner_a != owner_b and len(owner_b) == 64, f"canonical IDs differ per account: A={owner_a} B={owner_b}")
    acl = cb["s3"].get_bucket_acl(Bucket="estate-b1")
    check(acl["Owner"]["ID"] == owner_b, "GetBucketAcl owner of estate-b1 = account B's canonical ID")
    cb["s3control"].put_public_access_block(
        AccountId=OTHER_ACCOUNT,
        PublicAccessBlockConfiguration={"BlockPublicAcls": False, "IgnorePublicAcls": False,
                                        "BlockPublicPolicy": True, "RestrictPublicBuckets": True},
    )
    pab_b = cb["s3control"].get_public_access_block(AccountId=OTHER_ACCOUNT)["PublicAccessBlockConfiguration"]
    pab_a = c["s3control"].get_public_access_block(AccountId=DEFAULT_ACCOUNT)["PublicAccessBlockConfiguration"]
    check(pab_b["RestrictPublicBuckets"] is True and pab_a["RestrictPublicBuckets"] is False,
          "s3control account-level PAB is kept per account")
    expect_error(lambda: c["s3control"].get_public_access_block(AccountId=OTHER_ACCOUNT), "AccessDenied",
                 "s3control GetPublicAccessBlock with x-amz-account-id of another account")
    # Same-name global bucket namespace across accounts.
    expect_error(lambda: cb["s3"].create_bucket(Bucket="estate-a1"), "BucketAlreadyExists",
                 "account B creating account A's bucket name")


def check_organizations(c: dict) -> None:
    org = c["organizations"]
    o = org.create_organization(FeatureSet="ALL")["Organization"]
    check(o["MasterAccountId"] == DEFAULT_ACCOUNT, f"create_organization: master {o['MasterAccountId']} id {o['Id']}")
    st = org.create_account(AccountName="member1", Email="m1@example.com")["CreateAccountStatus"]
    check(st["State"] == "SUCCEEDED" and re.fullmatch(r"\d{12}", st.get("AccountId", "")) is not None,
          f"create_account: {st['State']} AccountId={st.get('AccountId')}")
    accts = org.list_accounts()["Accounts"]
    check(len(accts) == 2, f"list_accounts: {[(a['Id'], a['Name'], a['Status']) for a in accts]}")
    d = org.describe_organization()["Organization"]
    check(d["Id"] == o["Id"], f"describe_organization: {d['Id']} FeatureSet={d['FeatureSet']}")
    # The new member account is usable via AssumeRole into OrganizationAccountAccessRole.
    creds = c["sts"].assume_role(
        RoleArn=f"arn:aws:iam::{st['AccountId']}:role/OrganizationAccountAccessRole", RoleSessionName="estate"
    )["Credentials"]
    cm = boto3.client("sts", endpoint_url=c["sts"].meta.endpoint_url, region_name="us-east-1",
                      aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                      aws_session_token=creds["SessionToken"])
    check(cm.get_caller_identity()["Account"] == st["AccountId"], "member account reachable via AssumeRole")


def check_other_services(endpoint: str) -> None:
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    sqs = boto3.client("sqs", **kw)
    url = sqs.create_queue(QueueName="estate-events")["QueueUrl"]
    check(url.startswith(endpoint), f"SQS QueueUrl on this server: {url}")
    ev = boto3.client("events", **kw)
    arn = ev.put_rule(Name="estate-s3", EventPattern=json.dumps({"source": ["aws.s3"]}))["RuleArn"]
    ev.put_targets(Rule="estate-s3", Targets=[{"Id": "q", "Arn": "arn:aws:sqs:us-east-1:123456789012:estate-events"}])
    ev.put_events(Entries=[{"Source": "aws.s3", "DetailType": "AWS API Call via CloudTrail",
                            "Detail": json.dumps({"eventName": "PutBucketPolicy"})}])
    msgs = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    check(len(msgs) == 1 and "PutBucketPolicy" in msgs[0]["Body"],
          f"EventBridge rule {arn} -> SQS delivered {len(msgs)} message(s)")


def check_iam_auth(args: argparse.Namespace) -> None:
    """A second server: set up users while auth is off, then enforce it."""
    proc, port = start_server(args, [])
    endpoint = f"http://127.0.0.1:{port}"
    try:
        rec = Recorder()
        c = clients(endpoint, rec)
        c["s3"].create_bucket(Bucket="open")
        c["s3"].create_bucket(Bucket="secret")
        c["s3"].put_bucket_policy(Bucket="open", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::open"}]}))
        c["s3"].put_bucket_policy(Bucket="secret", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::secret"}]}))
        iam = c["iam"]
        iam.create_user(UserName="agent")
        iam.put_user_policy(UserName="agent", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:*", "sts:GetCallerIdentity", "sts:AssumeRole"], "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:GetBucketPolicy", "Resource": "arn:aws:s3:::secret"},
            ],
        }))
        key = iam.create_access_key(UserName="agent")["AccessKey"]
        # The role the "agent" user assumes, in another account: created with
        # that account's credentials (AssumeRole needs no real role while auth is off).
        b_creds = c["sts"].assume_role(RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/Setup",
                                       RoleSessionName="setup")["Credentials"]
        cb = clients(endpoint, rec, b_creds)
        cb["iam"].create_role(RoleName="EstateAgent", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
        cb["iam"].put_role_policy(RoleName="EstateAgent", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:*", "sts:GetCallerIdentity"], "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:GetBucketPolicy", "Resource": "arn:aws:s3:::b-secret"},
            ]}))
        cb["s3"].create_bucket(Bucket="b-secret")
        cb["s3"].put_bucket_policy(Bucket="b-secret", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::b-secret"}]}))
        # Enforce IAM from now on, on this server only.
        req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            check(r.status == 200, f"POST /moto-api/reset-auth 0 -> {r.read().decode()}")
        ca = clients(endpoint, rec, {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]})
        ok = ca["s3"].get_bucket_policy(Bucket="open")
        check("Statement" in ok["Policy"], "IAM auth: GetBucketPolicy on allowed bucket succeeds")
        expect_error(lambda: ca["s3"].get_bucket_policy(Bucket="secret"), "AccessDenied",
                     "IAM auth: GetBucketPolicy on denied bucket")
        body = rec.bodies.get("GetBucketPolicy", b"")
        check(root_of(body) == "Error", f"AccessDenied body root <{root_of(body)}>: {snippet(body, 200)}")
        expect_error(lambda: c["s3"].list_buckets(), "InvalidAccessKeyId",
                     "IAM auth: unknown access key 'testing' is rejected")
        # Agent-like identity: a role in another account, assumed by a user
        # that moto knows (set up with auth off, see above).
        role_creds = ca["sts"].assume_role(
            RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/EstateAgent", RoleSessionName="agent")["Credentials"]
        cr = clients(endpoint, rec, role_creds)
        ident = cr["sts"].get_caller_identity()["Arn"]
        check(ident.startswith(f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/EstateAgent"), f"IAM auth: role identity {ident}")
        check([b["Name"] for b in cr["s3"].list_buckets()["Buckets"]] == ["b-secret"], "IAM auth: role ListBuckets")
        expect_error(lambda: cr["s3"].get_bucket_policy(Bucket="b-secret"), "AccessDenied",
                     "IAM auth: role policy denies GetBucketPolicy on b-secret")
        req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"inf", method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req).close()
        check(isinstance(c["s3"].list_buckets()["Buckets"], list), "POST /moto-api/reset-auth inf turns auth off again")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    global VERBOSE
    p = argparse.ArgumentParser()
    p.add_argument("--no-patch", action="store_true", help="run the launcher with --no-patch")
    p.add_argument("--endpoint", help="use an already running server instead of starting one")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    VERBOSE = args.verbose
    os.environ.pop("AWS_PROFILE", None)

    proc = None
    if args.endpoint:
        endpoint = args.endpoint
    else:
        proc, port = start_server(args, [])
        endpoint = f"http://127.0.0.1:{port}"
        print(f"launcher READY on port {port}")
    try:
        rec = Recorder()
        c = clients(endpoint, rec)
        setup_buckets(c, DEFAULT_ACCOUNT)
        check_roots(c, rec)
        check_accounts(endpoint, c)
        check_organizations(c)
        check_other_services(endpoint)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    if not args.endpoint:
        check_iam_auth(args)

    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
