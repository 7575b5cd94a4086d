#!/usr/bin/env python3
"""Seeds a local moto server with a small organization for trying Estate out.

Three member accounts (111111111111, 222222222222, 333333333333), two Regions each, holding
what real organizations hold:

- public ACLs and public policies, block public access at bucket and account level, every default encryption type,
  versioning, tags, replication inside and outside the organization;
- objects in several storage classes and file types (some classifiable, some not, some
  compressed), encrypted in several ways;
- bucket policies that grant another member, an account outside the organization, the
  organization by its paths (`aws:PrincipalOrgPaths`) and a CloudFront distribution (origin
  access control), and two that require encryption (the common `Null` form, and SSE-KMS only);
- a bucket the agent's role may not read (`demo-333-restricted`: an explicit deny in the
  EstateAgent role's policy), which Estate reports as ACCESS_DENIED;
- in every account, the event path `deploy/cloudformation/member.yaml` sets up: an SQS queue
  (and its dead-letter queue) filled by an EventBridge rule with the template's own pattern.

Then it switches on moto's IAM enforcement, so that the role's deny is real. From then on only
keys moto issued are accepted: the seed creates the user `estate-demo` (account 123456789012,
moto's default) whose keys can assume `EstateAgent` (for the agents) and `DemoAdmin` (for
scripts/demo-change.sh) in every member account.

Usage: seed.py ENDPOINT_URL OUT_JSON
OUT_JSON receives the endpoint, the demo user's keys, each account's queue URLs and the
organization for the administrator's config (mode 0600); deploy/local/demo.py reads it.
"""

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import yaml

from demo import ACCOUNTS, DEFAULT_ACCOUNT, ORGANIZATION_ID, ORGANIZATION_PATH, OUTSIDE, client, s3control

REGIONS = ["us-east-1", "eu-west-1"]
RESTRICTED = "demo-333-restricted"
REPO = Path(__file__).resolve().parents[2]

# Objects: (key, size in bytes, storage class, server-side encryption or None).
# Classifiable: text, structured and document formats in STANDARD-like classes. Not
# classifiable: images and video (file type), anything in GLACIER or DEEP_ARCHIVE (class).
WEBSITE_OBJECTS = [
    ("index.html", 2_400, "STANDARD", None),
    ("about.html", 1_800, "STANDARD", None),
    ("assets/logo.png", 48_000, "STANDARD", None),
    ("assets/hero.jpg", 220_000, "STANDARD", None),
    ("assets/intro.mp4", 640_000, "STANDARD_IA", None),
]
LOG_OBJECTS = [
    ("2026/12/01/app.log", 90_000, "STANDARD", "AES256"),
    ("2026/12/02/app.log", 84_000, "STANDARD", "AES256"),
    ("2026/11/archive.tar.gz", 300_000, "GLACIER", "AES256"),
    ("2026/10/archive.tar.gz", 280_000, "DEEP_ARCHIVE", "AES256"),
    ("2026/12/02/access.log.gz", 30_000, "STANDARD_IA", "AES256"),
]
DATA_OBJECTS = [
    ("customers/customers.csv", 120_000, "STANDARD", "aws:kms"),
    ("customers/customers.parquet", 60_000, "INTELLIGENT_TIERING", "aws:kms"),
    ("orders/2026-12.jsonl", 150_000, "STANDARD", "aws:kms"),
    ("reports/q3.pdf", 400_000, "STANDARD_IA", "aws:kms"),
    ("reports/q3.xlsx", 75_000, "ONEZONE_IA", "aws:kms"),
    ("exports/legacy.bin", 10_000, "STANDARD", None),
]


def account_credentials(endpoint: str, account: str) -> dict:
    """Credentials in `account` while moto's IAM enforcement is off (no role needs to exist)."""
    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/Setup", RoleSessionName="seed")["Credentials"]


def create(s3, name: str, region: str) -> None:
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def put_objects(s3, bucket: str, objects: list) -> int:
    for key, size, storage_class, sse in objects:
        extra = {"StorageClass": storage_class}
        if sse:
            extra["ServerSideEncryption"] = sse
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size, **extra)
    return len(objects)


def roles(endpoint: str, account: str, creds: dict) -> None:
    """The agent's read-only role and the demo's administrator role in `account`."""
    iam = client("iam", endpoint, creds)
    trust = policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT_ACCOUNT}:root"},
                    "Action": "sts:AssumeRole"})
    iam.create_role(RoleName="EstateAgent", AssumeRolePolicyDocument=trust)
    statements = [{"Effect": "Allow", "Resource": "*", "Action": [
        "s3:Get*", "s3:List*", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage",
        "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility", "sts:GetCallerIdentity"]}]
    if account == ACCOUNTS[2]:
        statements.append({"Effect": "Deny", "Action": "s3:GetBucketPolicy",
                           "Resource": f"arn:aws:s3:::{RESTRICTED}"})
    iam.put_role_policy(RoleName="EstateAgent", PolicyName="estate-agent", PolicyDocument=policy(*statements))
    iam.create_role(RoleName="DemoAdmin", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="DemoAdmin", PolicyName="admin",
                        PolicyDocument=policy({"Effect": "Allow", "Action": "*", "Resource": "*"}))


def event_path(endpoint: str, creds: dict) -> dict:
    """The queue and rule of deploy/cloudformation/member.yaml, with the template's pattern."""
    template = yaml.load((REPO / "deploy/cloudformation/member.yaml").read_text(), Loader=_CfnLoader)
    pattern = template["Resources"]["S3EventsRule"]["Properties"]["EventPattern"]
    sqs = client("sqs", endpoint, creds)
    dead = sqs.create_queue(QueueName="estate-events-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="estate-events", Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dead_arn, "maxReceiveCount": "5"})})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = client("events", endpoint, creds)
    events.put_rule(Name="estate-s3-events", EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule="estate-s3-events", Targets=[{"Id": "estate-events", "Arn": arn}])
    return {"queue": queue, "deadLetters": dead}


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!If, !Ref, ...) as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node) if isinstance(node, yaml.MappingNode)
    else loader.construct_scalar(node)))


def main(endpoint: str, out: str) -> None:
    buckets = objects = 0
    queues = {}
    for index, account in enumerate(ACCOUNTS):
        creds = account_credentials(endpoint, account)
        roles(endpoint, account, creds)
        queues[account] = event_path(endpoint, creds)
        for region in REGIONS:
            s3 = client("s3", endpoint, creds, region)
            short = f"{account[:3]}-{region}"
            website = f"demo-{short}-website"
            create(s3, website, region)
            if index == 1:
                # Public through its policy: the dashboard shows the request that proves it.
                s3.put_bucket_policy(Bucket=website, Policy=policy({
                    "Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{website}/*"}))
            else:
                s3.put_bucket_acl(Bucket=website, ACL="public-read")
            s3.put_bucket_tagging(Bucket=website, Tagging={"TagSet": [{"Key": "team", "Value": "web"}]})
            objects += put_objects(s3, website, WEBSITE_OBJECTS)
            logs = f"demo-{short}-logs"
            create(s3, logs, region)
            s3.put_bucket_encryption(Bucket=logs, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
            objects += put_objects(s3, logs, LOG_OBJECTS)
            data = f"demo-{short}-data"
            create(s3, data, region)
            s3.put_bucket_encryption(Bucket=data, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": f"arn:aws:kms:{region}:{account}:key/demo"}}]})
            s3.put_bucket_versioning(Bucket=data, VersioningConfiguration={"Status": "Enabled"})
            s3.put_public_access_block(Bucket=data, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
            objects += put_objects(s3, data, DATA_OBJECTS)
            shared = f"demo-{short}-shared"
            create(s3, shared, region)
            s3.put_bucket_policy(Bucket=shared, Policy=policy({
                "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNTS[(index + 1) % 3]}:root"},
                "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{shared}/*"}))
            buckets += 4
        s3 = client("s3", endpoint, creds)
        backup = f"demo-{account[:3]}-backup"
        create(s3, backup, "us-east-1")
        s3.put_bucket_versioning(Bucket=backup, VersioningConfiguration={"Status": "Enabled"})
        destination = OUTSIDE if index == 0 else ACCOUNTS[0]
        s3.put_bucket_replication(Bucket=backup, ReplicationConfiguration={
            "Role": f"arn:aws:iam::{account}:role/replication",
            "Rules": [{"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                       "Destination": {"Bucket": f"arn:aws:s3:::replica-{destination}",
                                       "Account": destination}}]})
        buckets += 1
        buckets += special_buckets(s3, account)

    control = s3control(endpoint, account_credentials(endpoint, ACCOUNTS[2]))
    control.put_public_access_block(AccountId=ACCOUNTS[2], PublicAccessBlockConfiguration={
        "BlockPublicAcls": False, "IgnorePublicAcls": True,
        "BlockPublicPolicy": False, "RestrictPublicBuckets": False})

    # The demo's own identity, then IAM enforcement on.
    root = {"AccessKeyId": "testing", "SecretAccessKey": "testing"}
    iam = client("iam", endpoint, root)
    iam.create_user(UserName="estate-demo")
    iam.put_user_policy(UserName="estate-demo", PolicyName="assume",
                        PolicyDocument=policy({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}))
    key = iam.create_access_key(UserName="estate-demo")["AccessKey"]
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request).close()
    except urllib.error.URLError as e:
        raise SystemExit(f"switching on moto's IAM enforcement failed: {e}")
    state = {"endpoint": endpoint, "accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"],
             "accounts": queues,
             "organization": {"id": ORGANIZATION_ID, "accounts": ACCOUNTS, "paths": [ORGANIZATION_PATH]}}
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
    print(f"seeded {buckets} buckets and {objects} objects in {len(ACCOUNTS)} accounts")


def requires_encryption(s3, name: str, sid: str, condition: dict, obj: tuple) -> None:
    """A bucket whose policy denies the PutObject requests `condition` matches, with one object
    (written before the policy: moto applies a bucket policy's Deny without its condition)."""
    create(s3, name, "us-east-1")
    put_objects(s3, name, [obj])
    s3.put_bucket_policy(Bucket=name, Policy=policy({
        "Sid": sid, "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{name}/*", "Condition": condition}))


def special_buckets(s3, account: str) -> int:
    """The buckets that show one thing each, in us-east-1 of their account."""
    made = []
    if account == ACCOUNTS[0]:
        # Requires encryption in the common form: deny PutObject without the SSE header.
        made.append(name := "demo-111-secure")
        requires_encryption(s3, name, "DenyUnencryptedUploads",
                            {"Null": {"s3:x-amz-server-side-encryption": "true"}},
                            ("payroll/2026-11.csv", 40_000, "STANDARD", "AES256"))
    if account == ACCOUNTS[1]:
        # Requires SSE-KMS: any other (or no) encryption header is denied.
        made.append(name := "demo-222-kms-only")
        requires_encryption(s3, name, "DenyAnythingButKms",
                            {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}},
                            ("keys/manifest.json", 3_000, "STANDARD", "aws:kms"))
        # Readable by every principal of the organization's member OU, by path.
        made.append(name := "demo-222-org")
        create(s3, name, "us-east-1")
        s3.put_bucket_policy(Bucket=name, Policy=policy({
            "Sid": "OrganizationRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{name}/*",
            "Condition": {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": [f"{ORGANIZATION_PATH}*"]}}}))
    if account == ACCOUNTS[2]:
        # A CloudFront distribution's origin, through origin access control.
        made.append(name := "demo-333-cdn")
        create(s3, name, "us-east-1")
        s3.put_bucket_policy(Bucket=name, Policy=policy({
            "Sid": "CloudFrontOriginAccessControl", "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{name}/*",
            "Condition": {"StringEquals": {
                "AWS:SourceArn": f"arn:aws:cloudfront::{account}:distribution/EDFDVBD6EXAMPLE"}}}))
        put_objects(s3, name, [("index.html", 2_000, "STANDARD", None), ("video/launch.mp4", 900_000, "STANDARD", None)])
        # The agent's role may not read this bucket's policy (see roles()).
        made.append(RESTRICTED)
        create(s3, RESTRICTED, "us-east-1")
        s3.put_bucket_policy(Bucket=RESTRICTED, Policy=policy({
            "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": f"arn:aws:s3:::{RESTRICTED}"}))
    return len(made)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
