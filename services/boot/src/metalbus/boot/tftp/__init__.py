"""TFTP (RFC 1350) with option negotiation (RFC 2347-2349) and window size (RFC 7440)."""
