// Package dwcp is the DWCP v3 live-migration engine: it wires the six
// components (amst, hde, pba, acp, ass, itp) into pre-copy live migration of
// virtual machine memory between hosts, in a datacenter and across the WAN.
package dwcp
