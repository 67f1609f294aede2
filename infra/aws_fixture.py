"""Provisions what the push tests submit to and prints it as JSON on stdout.

    python infra/aws_fixture.py NAME

Creates (or finds) an ECS cluster NAME, and a Batch compute environment and job queue NAME on
Fargate with a service role, all in the default VPC's first subnet. Reads the endpoint, region
and credentials from the standard AWS_* variables, so it serves the emulator, LocalStack or an
account alike. On moto it first switches Batch to its no-Docker mode, since no Docker engine is
needed or assumed.
"""

import json
import os
import sys
import time
import urllib.request

import boto3

name = sys.argv[1]
endpoint = os.environ.get("AWS_ENDPOINT_URL", "")

if endpoint:
    try:
        request = urllib.request.Request(
            endpoint.rstrip("/") + "/moto-api/config",
            data=json.dumps({"batch": {"use_docker": False}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).read()
    except Exception:  # not moto: nothing to switch
        pass

ec2 = boto3.client("ec2")
vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
if not vpcs:
    sys.exit("aws_fixture: the region has no default VPC")
vpc_id = vpcs[0]["VpcId"]
subnets = [
    s["SubnetId"]
    for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
]
groups = [
    g["GroupId"]
    for g in ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
]

ecs = boto3.client("ecs")
cluster = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]

iam = boto3.client("iam")
role_name = f"{name}-batch"
trust = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
try:
    role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
except iam.exceptions.EntityAlreadyExistsException:
    role_arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]

batch = boto3.client("batch")
existing = batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
if existing:
    environment_arn = existing[0]["computeEnvironmentArn"]
else:
    environment_arn = batch.create_compute_environment(
        computeEnvironmentName=name,
        type="MANAGED",
        state="ENABLED",
        serviceRole=role_arn,
        computeResources={"type": "FARGATE", "maxvCpus": 16, "subnets": subnets[:1], "securityGroupIds": groups[:1]},
    )["computeEnvironmentArn"]
queues = batch.describe_job_queues(jobQueues=[name])["jobQueues"]
if queues:
    queue_arn = queues[0]["jobQueueArn"]
else:
    queue_arn = batch.create_job_queue(
        jobQueueName=name,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment_arn}],
    )["jobQueueArn"]
for _ in range(60):
    status = batch.describe_job_queues(jobQueues=[queue_arn])["jobQueues"][0]["status"]
    if status == "VALID":
        break
    time.sleep(1)

json.dump(
    {
        "cluster": name,
        "cluster_arn": cluster,
        "subnets": subnets[:1],
        "security_groups": groups[:1],
        "job_queue": name,
        "job_queue_arn": queue_arn,
    },
    sys.stdout,
)
