"""metalbus ipam service: fabrics, VLANs, spaces, subnets, ranges and addresses."""
