"""Reads from the embargo bucket: the expected-sensors object and the exposure listing.

Per exposure: one GET and one ListObjectsV2 request per 1000 keys. One client per process,
reused across jobs, so its connection pool is too.
"""
from __future__ import annotations

import boto3
import botocore.config
import orjson
from botocore.exceptions import ClientError

from ..common import time as ttime
from ..common.settings import Settings


def make_client(settings: Settings):
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key.reveal() if settings.aws_secret_access_key else None,
        region_name="us-east-1",
        verify=settings.s3_verify,
        config=botocore.config.Config(
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=16,
        ),
    )


class BucketReader:
    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket

    def read_json(self, key: str) -> object | None:
        """The object's JSON content, or None when there is no such object.

        Raises orjson.JSONDecodeError when the object is not JSON.
        """
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        with body:
            return orjson.loads(body.read())

    def last_modified(self, prefix: str) -> dict[str, float]:
        """Every key under `prefix` with its LastModified (UTC unix seconds)."""
        found = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000}):
            for item in page.get("Contents", ()):
                found[item["Key"]] = ttime.to_unix(item["LastModified"])
        return found
