"""metalbus ipam service: IP address management: fabrics, VLANs, spaces, subnets, ranges, addresses."""
