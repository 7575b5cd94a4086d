#!/usr/bin/env python3
"""What the local demo's scripts share: the organization it seeds, the state seed.py leaves in
RUN_DIR/seed.json, and credentials in its member accounts.

Also a small command line for scripts/run-local.sh:

  demo.py organization RUN_DIR       the administrator config's [organization] section
  demo.py agent RUN_DIR ACCOUNT      the agent's credentials and queues, one line:
                                     KEY SECRET SESSION QUEUE_URL DEAD_LETTER_QUEUE_URL
"""

import json
import sys
from pathlib import Path

import boto3

ACCOUNTS = ["111111111111", "222222222222", "333333333333"]
# An account outside the organization.
OUTSIDE = "999999999999"
ORGANIZATION_ID = "o-localdemo01"
# Every member sits in this OU; seed.py's organization-paths grant names it.
ORGANIZATION_PATH = f"{ORGANIZATION_ID}/r-demo/ou-demo-members/"
# moto's own account, which holds the demo user.
DEFAULT_ACCOUNT = "123456789012"


def client(service: str, endpoint: str, creds: dict, region: str = "us-east-1"):
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds.get("SessionToken"))


def s3control(endpoint: str, creds: dict):
    """S3 Control at moto's plain address: the SDK puts the account ID in front of the host."""
    from urllib.parse import urlsplit, urlunsplit

    host = urlsplit(endpoint).netloc

    def plain_host(request, **_):
        parts = urlsplit(request.url)
        request.url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        request.headers["Host"] = host

    control = client("s3control", endpoint, creds)
    control.meta.events.register("before-sign.s3-control.*", plain_host)
    return control


def load(run_dir: Path) -> dict:
    """RUN_DIR/seed.json: the endpoint, the demo user's keys, each account's queues."""
    return json.loads((Path(run_dir) / "seed.json").read_text())


def assume(state: dict, account: str, role: str, session: str) -> dict:
    """Credentials of `role` in `account`, assumed with the demo user's keys (moto enforces IAM
    once seeded, and accepts only keys it issued)."""
    user = {"AccessKeyId": state["accessKeyId"], "SecretAccessKey": state["secretAccessKey"]}
    sts = client("sts", state["endpoint"], user)
    return sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName=session)["Credentials"]


def main(argv: list) -> None:
    if len(argv) == 2 and argv[0] == "organization":
        organization = load(Path(argv[1]))["organization"]
        print("[organization]")
        print(f'id = "{organization["id"]}"')
        print("accounts = [" + ", ".join(f'"{a}"' for a in organization["accounts"]) + "]")
        print("paths = [" + ", ".join(f'"{p}"' for p in organization["paths"]) + "]")
    elif len(argv) == 3 and argv[0] == "agent":
        state = load(Path(argv[1]))
        creds = assume(state, argv[2], "EstateAgent", "agent")
        queues = state["accounts"][argv[2]]
        print(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], queues["queue"],
              queues["deadLetters"])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
