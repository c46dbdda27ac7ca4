#!/usr/bin/env bash
# EMR bootstrap action: runs on every node (primary, core, task) before Spark starts.
# Installs Python 3.11 and sensor-etl from the release files copied to S3 (deploy/emr/README.md),
# and mounts the shared folder that holds the inbox, processed/ and quarantine/ when an EFS id is given.
#
#   Args: S3_PREFIX [EFS_ID]
#     S3_PREFIX  s3://bucket/sensor-etl/ holding sensor_etl-*.whl, etl_pipeline.py and sensor-etl.env
#     EFS_ID     fs-0123456789abcdef0: mounted at /mnt/sensor-etl on every node (the folders must be the same on all)
set -euo pipefail

S3_PREFIX="${1:?usage: bootstrap.sh s3://bucket/sensor-etl/ [fs-id]}"
EFS_ID="${2:-}"
HOME_DIR=/home/hadoop/sensor-etl
PYTHON=/usr/bin/python3.11   # configurations.json points PYSPARK_PYTHON here

sudo dnf install -y -q python3.11 python3.11-pip
mkdir -p "$HOME_DIR"
aws s3 cp --recursive --exclude '*' --include 'sensor_etl-*.whl' --include 'etl_pipeline.py' --include 'sensor-etl.env' \
    "${S3_PREFIX%/}/" "$HOME_DIR/"
# Not the spark extra: EMR's own Spark 3.5 provides pyspark to the jobs it runs.
wheel=$(ls "$HOME_DIR"/sensor_etl-*.whl | sort -V | tail -n 1)
sudo "$PYTHON" -m pip install -q "$wheel"
chmod 600 "$HOME_DIR/sensor-etl.env"  # it holds DATABASE_URL

if [ -n "$EFS_ID" ]; then
    sudo dnf install -y -q amazon-efs-utils
    sudo mkdir -p /mnt/sensor-etl
    sudo mount -t efs -o tls "$EFS_ID":/ /mnt/sensor-etl
    sudo chown hadoop:hadoop /mnt/sensor-etl
fi
