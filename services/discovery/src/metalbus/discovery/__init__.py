"""metalbus discovery service: network discovery: ARP, NDP, mDNS, active scans."""
