package proxier

import (
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// nodeFromAPI extracts what the proxier needs from a Node. Addresses are the InternalIP
// and ExternalIP status addresses, de-duplicated, in the order the Node lists them (the
// first of each family is the node's primary address, as kube-proxy uses it).
func nodeFromAPI(n *v1.Node) (Node, error) {
	out := Node{
		Name:     n.Name,
		Zone:     n.Labels[LabelTopologyZone],
		Deleting: n.DeletionTimestamp != nil,
	}
	var errs field.ErrorList
	for i, a := range n.Status.Addresses {
		if a.Type != v1.NodeInternalIP && a.Type != v1.NodeExternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil || ip.Zone() != "" {
			errs = append(errs, field.Invalid(field.NewPath("status", "addresses").Index(i).Child("address"), a.Address, "not a valid IP address"))
			continue
		}
		if ip = ip.Unmap(); !slices.Contains(out.Addresses, ip) {
			out.Addresses = append(out.Addresses, ip)
		}
	}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for i, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			errs = append(errs, field.Invalid(field.NewPath("spec", "podCIDRs").Index(i), c, "not a CIDR"))
			continue
		}
		out.PodCIDRs = append(out.PodCIDRs, p.Masked())
	}
	if len(errs) > 0 {
		return out, &InvalidObjectError{Kind: "Node", Name: n.Name, Errs: errs}
	}
	return out, nil
}
