#!/usr/bin/env python3
"""Seeds a local moto server with a small organization for trying Estate out.

Three member accounts (111111111111, 222222222222, 333333333333), two Regions each, and
buckets that show what Estate reports: public ACLs, block public access at bucket and account
level, every default encryption type, replication inside and outside the organization, tags,
versioning and bucket policies. Usage: seed.py ENDPOINT_URL
"""

import json
import sys

import boto3

ACCOUNTS = ["111111111111", "222222222222", "333333333333"]
OUTSIDE = "999999999999"


def session(endpoint: str, account: str) -> boto3.Session:
    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/EstateAgent",
                            RoleSessionName="seed")["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                         aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"])


def create(s3, name: str, region: str) -> None:
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})


def main(endpoint: str) -> None:
    count = 0
    for index, account in enumerate(ACCOUNTS):
        sess = session(endpoint, account)
        for region in ["us-east-1", "eu-west-1"]:
            s3 = sess.client("s3", endpoint_url=endpoint, region_name=region)
            short = f"{account[:3]}-{region}"
            create(s3, f"demo-{short}-website", region)
            s3.put_bucket_acl(Bucket=f"demo-{short}-website", ACL="public-read")
            s3.put_bucket_tagging(Bucket=f"demo-{short}-website",
                                  Tagging={"TagSet": [{"Key": "team", "Value": "web"}]})
            create(s3, f"demo-{short}-logs", region)
            s3.put_bucket_encryption(Bucket=f"demo-{short}-logs", ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
            create(s3, f"demo-{short}-data", region)
            s3.put_bucket_encryption(Bucket=f"demo-{short}-data", ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": f"arn:aws:kms:{region}:{account}:key/demo"}}]})
            s3.put_bucket_versioning(Bucket=f"demo-{short}-data", VersioningConfiguration={"Status": "Enabled"})
            s3.put_public_access_block(Bucket=f"demo-{short}-data", PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
            create(s3, f"demo-{short}-shared", region)
            s3.put_bucket_policy(Bucket=f"demo-{short}-shared", Policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow",
                               "Principal": {"AWS": f"arn:aws:iam::{ACCOUNTS[(index + 1) % 3]}:root"},
                               "Action": "s3:GetObject",
                               "Resource": f"arn:aws:s3:::demo-{short}-shared/*"}]}))
            count += 4
        s3 = sess.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        backup = f"demo-{account[:3]}-backup"
        create(s3, backup, "us-east-1")
        s3.put_bucket_versioning(Bucket=backup, VersioningConfiguration={"Status": "Enabled"})
        destination = OUTSIDE if index == 0 else ACCOUNTS[0]
        s3.put_bucket_replication(Bucket=backup, ReplicationConfiguration={
            "Role": f"arn:aws:iam::{account}:role/replication",
            "Rules": [{"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                       "Destination": {"Bucket": f"arn:aws:s3:::replica-{destination}",
                                       "Account": destination}}]})
        count += 1
    control = session(endpoint, ACCOUNTS[2]).client("s3control", endpoint_url=endpoint, region_name="us-east-1")
    control.meta.events.register("before-sign.s3-control.*", _static_host(endpoint))
    control.put_public_access_block(AccountId=ACCOUNTS[2], PublicAccessBlockConfiguration={
        "BlockPublicAcls": False, "IgnorePublicAcls": True,
        "BlockPublicPolicy": False, "RestrictPublicBuckets": False})
    print(f"seeded {count} buckets in {len(ACCOUNTS)} accounts")


def _static_host(endpoint: str):
    """S3 Control puts the account ID in front of the host; moto listens on a plain address."""
    from urllib.parse import urlsplit, urlunsplit

    host = urlsplit(endpoint).netloc

    def handler(request, **_):
        parts = urlsplit(request.url)
        request.url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        request.headers["Host"] = host

    return handler


if __name__ == "__main__":
    main(sys.argv[1])
