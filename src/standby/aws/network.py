"""`StandbyNetwork`: a VPC over two availability zones, and the security groups that decide who talks to whom.

Only the load balancer reaches the services, only the services (and the runbook tasks, which run with
the service group) reach the database.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

POSTGRES_PORT = 5432


@dataclass(frozen=True)
class NetworkArgs:
    availability_zones: list[str]
    container_port: int
    cidr: str = "10.40.0.0/16"


class StandbyNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("standby:aws:StandbyNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, opts=child)
        base = args.cidr.split(".")[:2]
        self.public_subnets = [
            aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=self.vpc.id,
                cidr_block=f"{base[0]}.{base[1]}.{i * 16}.0/20",
                availability_zone=zone,
                map_public_ip_on_launch=False,
                opts=child,
            )
            for i, zone in enumerate(args.availability_zones[:2])
        ]
        self.private_subnets = [
            aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                cidr_block=f"{base[0]}.{base[1]}.{128 + i * 16}.0/20",
                availability_zone=zone,
                opts=child,
            )
            for i, zone in enumerate(args.availability_zones[:2])
        ]
        public_routes = aws.ec2.RouteTable(
            f"{name}-public-routes",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            opts=child,
        )
        # One NAT gateway: private tasks pull images and reach Heroku; a second AZ's NAT is a cost the
        # standby does not need until it is active (a cutover survives one AZ's NAT being down by rerun).
        address = aws.ec2.Eip(f"{name}-nat-ip", domain="vpc", opts=child)
        nat = aws.ec2.NatGateway(
            f"{name}-nat", allocation_id=address.id, subnet_id=self.public_subnets[0].id, opts=child
        )
        private_routes = aws.ec2.RouteTable(
            f"{name}-private-routes",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
            opts=child,
        )
        for i, subnet in enumerate(self.public_subnets):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}-routes", subnet_id=subnet.id, route_table_id=public_routes.id, opts=child
            )
        for i, subnet in enumerate(self.private_subnets):
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}-routes",
                subnet_id=subnet.id,
                route_table_id=private_routes.id,
                opts=child,
            )

        everywhere: list[aws.ec2.SecurityGroupEgressArgsDict] = [
            {"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}
        ]
        self.load_balancer_group = aws.ec2.SecurityGroup(
            f"{name}-alb",
            vpc_id=self.vpc.id,
            description="the public load balancer: HTTPS (and HTTP, redirected) from anywhere",
            ingress=[
                {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]},
                {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr_blocks": ["0.0.0.0/0"]},
            ],
            egress=[{"protocol": "tcp", "from_port": args.container_port, "to_port": args.container_port,
                     "cidr_blocks": [args.cidr]}],
            opts=child,
        )  # fmt: skip
        self.service_group = aws.ec2.SecurityGroup(
            f"{name}-services",
            vpc_id=self.vpc.id,
            description="app services and runbook tasks: reached only from the load balancer",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": args.container_port,
                    "to_port": args.container_port,
                    "security_groups": [self.load_balancer_group.id],
                }
            ],
            egress=everywhere,  # images, AWS APIs, Heroku (backups), the app's own dependencies
            opts=child,
        )
        # The backup and restore-ahead tasks: HTTPS (AWS APIs, the image registry, Heroku's API) and
        # PostgreSQL (Heroku's database, the standby's) only; a task that is taken over reaches nothing else.
        self.backup_group = aws.ec2.SecurityGroup(
            f"{name}-backup-tasks",
            vpc_id=self.vpc.id,
            description="the backup and restore-ahead tasks: HTTPS and PostgreSQL out, nothing in",
            egress=[
                {"protocol": "tcp", "from_port": port, "to_port": port, "cidr_blocks": ["0.0.0.0/0"]}
                for port in (443, POSTGRES_PORT)
            ],
            opts=child,
        )
        self.database_group = aws.ec2.SecurityGroup(
            f"{name}-database",
            vpc_id=self.vpc.id,
            description="the standby database: reached only from the services and runbook tasks",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": POSTGRES_PORT,
                    "to_port": POSTGRES_PORT,
                    "security_groups": [self.service_group.id, self.backup_group.id],
                }
            ],
            opts=child,
        )
        self.register_outputs({"vpcId": self.vpc.id})
