#!/usr/bin/env python3
"""Changes a bucket of the local demo for the worse (or back), the way a member account would,
and sends the CloudTrail event the change would cause through the account's real event path:
EventBridge's default bus, the rule `deploy/cloudformation/member.yaml` defines (seed.py
created it with the template's pattern), the account's SQS queue, the agent reading it.

Usage: demo_change.py RUN_DIR COMMAND BUCKET, run by scripts/demo-change.sh, where:

  make-public BUCKET    adds a statement letting anyone read objects (Principal "*")
  share-outside BUCKET  adds a statement letting account 999999999999 (outside) read objects
  disable-bpa BUCKET    deletes the bucket's block public access settings
  revert BUCKET         puts back the policy and block public access the bucket had before
                        the first change, with the events for each

RUN_DIR is where scripts/run-local.sh keeps its state (seed.json: the endpoint and the demo
user's keys; env: the administrator's addresses). The state before the first change is kept
in RUN_DIR/demo-changes/BUCKET.json until `revert`.
"""

import copy
import datetime
import json
import sys
import uuid
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from demo import OUTSIDE, assume, client, load, s3control

COMMANDS = ("make-public", "share-outside", "disable-bpa", "revert")
SESSION = "demo-change"


class Account:
    """The demo's administrator role in one member account."""

    def __init__(self, state: dict, account: str):
        self.id = account
        self.endpoint = state["endpoint"]
        self.creds = assume(state, account, "DemoAdmin", SESSION)

    def client(self, service: str, region: str = "us-east-1"):
        return client(service, self.endpoint, self.creds, region)

    def event(self, name: str, bucket: str, region: str) -> str:
        """Publishes the CloudTrail event of a successful `name` call on `bucket`; returns its ID."""
        now = datetime.datetime.now(datetime.timezone.utc)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        role = f"arn:aws:iam::{self.id}:role/DemoAdmin"
        event_id = str(uuid.uuid4())
        detail = {
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "AssumedRole",
                "principalId": f"AROADEMOADMIN:{SESSION}",
                "arn": f"arn:aws:sts::{self.id}:assumed-role/DemoAdmin/{SESSION}",
                "accountId": self.id,
                "accessKeyId": self.creds["AccessKeyId"],
                "sessionContext": {
                    "sessionIssuer": {"type": "Role", "principalId": "AROADEMOADMIN", "arn": role,
                                      "accountId": self.id, "userName": "DemoAdmin"},
                    "attributes": {"creationDate": stamp, "mfaAuthenticated": "false"},
                },
            },
            "eventTime": stamp,
            "eventSource": "s3.amazonaws.com",
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": "127.0.0.1",
            "userAgent": "estate-demo-change",
            "requestParameters": {"bucketName": bucket, "Host": f"{bucket}.s3.{region}.amazonaws.com"},
            "responseElements": None,
            "eventID": event_id,
            "readOnly": False,
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": self.id,
            "eventCategory": "Management",
        }
        # The rule lives on us-east-1's default bus, which the demo's agents read for both Regions.
        answer = self.client("events").put_events(Entries=[{
            "Source": "aws.s3", "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(detail),
            "Resources": [f"arn:aws:s3:::{bucket}"], "Time": now}])
        if answer.get("FailedEntryCount"):
            raise SystemExit(f"EventBridge refused the event: {answer['Entries']}")
        return event_id


def owner(state: dict, bucket: str) -> Account:
    for account in state["accounts"]:
        candidate = Account(state, account)
        names = {b["Name"] for b in candidate.client("s3").list_buckets()["Buckets"]}
        if bucket in names:
            return candidate
    raise SystemExit(f"no member account of the demo has a bucket named {bucket!r}")


def current(s3, bucket: str) -> dict:
    """The bucket's policy and block public access settings (None when absent)."""
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchBucketPolicy":
            raise
        policy = None
    try:
        bpa = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchPublicAccessBlockConfiguration":
            raise
        bpa = None
    return {"policy": policy, "publicAccessBlock": bpa}


def with_statement(policy, statement: dict) -> str:
    document = copy.deepcopy(policy) or {"Version": "2012-10-17", "Statement": []}
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    document["Statement"] = [s for s in statements if s.get("Sid") != statement["Sid"]] + [statement]
    return json.dumps(document)


def blocks_public_policies(account: Account, now: dict) -> bool:
    """Whether the bucket's or its account's block public access settings make a public policy
    ineffective (BlockPublicPolicy refuses it, RestrictPublicBuckets restricts it)."""
    settings = [now["publicAccessBlock"] or {}]
    control = s3control(account.endpoint, account.creds)
    try:
        settings.append(control.get_public_access_block(AccountId=account.id)["PublicAccessBlockConfiguration"])
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchPublicAccessBlockConfiguration":
            raise
    return any(s.get("BlockPublicPolicy") or s.get("RestrictPublicBuckets") for s in settings)


def main(run_dir: Path, command: str, bucket: str) -> None:
    try:
        change(run_dir, command, bucket)
    except EndpointConnectionError:
        raise SystemExit(f"the local demo of {run_dir} is not running (its moto server does not answer): "
                         "start scripts/run-local.sh")
    except ClientError as e:
        error = e.response.get("Error", {})
        raise SystemExit(f"{command} {bucket}: {e.operation_name} failed: {error.get('Code')}: {error.get('Message')}")
    except BotoCoreError as e:
        raise SystemExit(f"{command} {bucket}: {e}")


def change(run_dir: Path, command: str, bucket: str) -> None:
    state = load(run_dir)
    account = owner(state, bucket)
    region = account.client("s3").get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    s3 = account.client("s3", region)
    saved = run_dir / "demo-changes" / f"{bucket}.json"
    now = current(s3, bucket)
    sent = []
    if command == "revert":
        if not saved.exists():
            raise SystemExit(f"{bucket} has no change of this demo to revert")
        before = json.loads(saved.read_text())
        if before["policy"] != now["policy"]:
            if before["policy"] is None:
                s3.delete_bucket_policy(Bucket=bucket)
                sent.append(("DeleteBucketPolicy", account.event("DeleteBucketPolicy", bucket, region)))
            else:
                s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(before["policy"]))
                sent.append(("PutBucketPolicy", account.event("PutBucketPolicy", bucket, region)))
        if before["publicAccessBlock"] != now["publicAccessBlock"]:
            if before["publicAccessBlock"] is None:
                s3.delete_public_access_block(Bucket=bucket)
                sent.append(("DeleteBucketPublicAccessBlock",
                             account.event("DeleteBucketPublicAccessBlock", bucket, region)))
            else:
                s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=before["publicAccessBlock"])
                sent.append(("PutBucketPublicAccessBlock", account.event("PutBucketPublicAccessBlock", bucket, region)))
        saved.unlink()
        expect = "no new finding (a change for the better raises none); the bucket's verdicts return to what they were"
    else:
        if command == "disable-bpa" and now["publicAccessBlock"] is None:
            raise SystemExit(f"{bucket} has no block public access settings to disable")
        if not saved.exists():
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(now, indent=2))
        resource = f"arn:aws:s3:::{bucket}/*"
        if command == "make-public":
            s3.put_bucket_policy(Bucket=bucket, Policy=with_statement(now["policy"], {
                "Sid": "EstateDemoPublicRead", "Effect": "Allow", "Principal": "*",
                "Action": "s3:GetObject", "Resource": resource}))
            sent.append(("PutBucketPolicy", account.event("PutBucketPolicy", bucket, region)))
            expect = "a Policy:IAMUser/S3BucketPublic finding"
            if blocks_public_policies(account, now):
                expect += (" only once block public access allows it: the bucket's or the account's settings"
                           " make public policies ineffective" + (f" (try `disable-bpa {bucket}` next)"
                                                                   if now["publicAccessBlock"] else ""))
        elif command == "share-outside":
            s3.put_bucket_policy(Bucket=bucket, Policy=with_statement(now["policy"], {
                "Sid": "EstateDemoShareOutside", "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{OUTSIDE}:root"}, "Action": "s3:GetObject",
                "Resource": resource}))
            sent.append(("PutBucketPolicy", account.event("PutBucketPolicy", bucket, region)))
            expect = f"a Policy:IAMUser/S3BucketSharedExternally finding (account {OUTSIDE} is outside)"
        else:
            s3.delete_public_access_block(Bucket=bucket)
            sent.append(("DeleteBucketPublicAccessBlock",
                         account.event("DeleteBucketPublicAccessBlock", bucket, region)))
            expect = "a Policy:IAMUser/S3BlockPublicAccessDisabled finding"
    env = _read_env(run_dir / "env")
    for name, event_id in sent:
        print(f"{command} {bucket}: {name} in account {account.id} ({region}), CloudTrail event {event_id}")
    print(f"Expect {expect}.")
    print("Watch it arrive:")
    if env.get("ESTATE_DASHBOARD"):
        print(f"  the dashboard's findings page: {env['ESTATE_DASHBOARD']}#/findings")
    print(f"  or: source {run_dir / 'env'} && estatectl watch")


def _read_env(path: Path) -> dict:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export "):].partition("=")
                values[key] = value.strip("'\"")
    return values


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] not in COMMANDS:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
