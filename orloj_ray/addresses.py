"""Addresses that no outbound call of orloj-ray may reach, whatever a manifest says.

Shared by the tool egress guard (``orloj_ray.tools.egress``) and the model gateway
(``orloj_ray.gateway.http.refuse_metadata_hosts``): instance-metadata services hand out cloud
credentials to anyone on the machine who asks.
"""

from __future__ import annotations

import ipaddress

METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",   # AWS, GCP, Azure, OpenStack, DigitalOcean
    "169.254.170.2",     # AWS ECS task metadata
    "169.254.169.253",   # AWS DNS
    "100.100.100.200",   # Alibaba Cloud
    "fd00:ec2::254",     # AWS IMDS over IPv6
))
