#!/usr/bin/env python3
"""Prints eeade17's template.yaml with its billing table and usage queues renamed
(BaselineBillingTable, BaselineUsageQueue, BaselineUsageDeadLetterQueue), so that eeade17's
infra/bootstrap.py creates today's design's resources in the same emulators as the new design's
without touching them (bench/usage.sh). Python standard library only.

    rename_template.py TEMPLATE > RENAMED
"""
import re, sys
text = open(sys.argv[1]).read()
names = {"BillingTable": ("AWS::DynamoDB::Table", "TableName", "BaselineBillingTable"),
         "UsageQueue": ("AWS::SQS::Queue", "QueueName", "BaselineUsageQueue"),
         "UsageDeadLetterQueue": ("AWS::SQS::Queue", "QueueName", "BaselineUsageDeadLetterQueue")}
for logical, (rtype, prop, name) in names.items():
    pattern = re.compile(r"(\n  %s:\n    Type: %s\n(?:    .*\n)*?    Properties:\n)" % (logical, re.escape(rtype)))
    text, n = pattern.subn(lambda m: m.group(1) + "      %s: %s\n" % (prop, name), text, count=1)
    if n != 1:
        sys.exit("rename: %s not found" % logical)
sys.stdout.write(text)
