package proxier

import (
	"fmt"
	"net/netip"
	"time"

	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// sliceKey identifies an EndpointSlice.
type sliceKey struct{ namespace, name string }

// slicePort is one port of an EndpointSlice.
type slicePort struct {
	name     string
	protocol Protocol
	port     uint16
}

// parsedSlice is the validated content of one EndpointSlice: the ports and the
// endpoints, kept apart because every endpoint serves every port of its slice.
type parsedSlice struct {
	service ServiceName
	// family is the address type; every endpoint is of it.
	family    IPFamily
	ports     []slicePort
	endpoints []Endpoint // Port is left zero; filled per service port
	trigger   time.Time
}

// ignoredSlice reports why an EndpointSlice is none of this proxy's business, or "".
func ignoredSlice(s *discovery.EndpointSlice) string {
	switch {
	case s.Labels[LabelServiceProxyName] != "":
		return "managed by another service proxy"
	case s.Labels[LabelHeadless] != "":
		return "belongs to a headless service"
	case s.AddressType == discovery.AddressTypeFQDN:
		return "FQDN address type"
	}
	return ""
}

// sliceFromAPI validates and converts an EndpointSlice. It returns (nil, nil) for
// slices this proxy ignores.
func sliceFromAPI(s *discovery.EndpointSlice, nodeName string) (*parsedSlice, error) {
	if ignoredSlice(s) != "" {
		return nil, nil
	}
	svcName := s.Labels[LabelServiceName]
	out := &parsedSlice{service: ServiceName{Namespace: s.Namespace, Name: svcName}}
	var errs field.ErrorList
	if svcName == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "labels").Key(LabelServiceName),
			"an EndpointSlice must name its Service"))
	}
	var family IPFamily
	switch s.AddressType {
	case discovery.AddressTypeIPv4:
		family = IPv4
	case discovery.AddressTypeIPv6:
		family = IPv6
	default:
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), s.AddressType, []string{"IPv4", "IPv6", "FQDN"}))
	}

	seenName := map[string]bool{}
	for i, p := range s.Ports {
		path := field.NewPath("ports").Index(i)
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		proto := ProtocolTCP
		if p.Protocol != nil {
			var err *field.Error
			if proto, err = parseProtocol(path.Child("protocol"), *p.Protocol); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if p.Port == nil {
			errs = append(errs, field.Required(path.Child("port"), "kube-proxy cannot program a port without a number"))
			continue
		}
		if *p.Port < 1 || *p.Port > 65535 {
			errs = append(errs, portRangeError(path.Child("port"), *p.Port, PortRange{1, 65535}))
			continue
		}
		if seenName[name+"/"+proto.String()] {
			errs = append(errs, field.Duplicate(path.Child("name"), name))
			continue
		}
		seenName[name+"/"+proto.String()] = true
		out.ports = append(out.ports, slicePort{name: name, protocol: proto, port: uint16(*p.Port)})
	}

	out.endpoints = make([]Endpoint, 0, len(s.Endpoints))
	for i := range s.Endpoints {
		ep := &s.Endpoints[i]
		path := field.NewPath("endpoints").Index(i)
		if len(ep.Addresses) == 0 {
			errs = append(errs, field.Required(path.Child("addresses"), ""))
			continue
		}
		// Like kube-proxy, only the first address is used: the API says the others
		// are interchangeable and consumers may pick any.
		ip, err := parseIP(path.Child("addresses").Index(0), ep.Addresses[0])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if family != 0 && FamilyOf(ip) != family {
			errs = append(errs, field.Invalid(path.Child("addresses").Index(0), ep.Addresses[0],
				fmt.Sprintf("not an %s address", s.AddressType)))
			continue
		}
		out.endpoints = append(out.endpoints, endpointFromAPI(ep, ip, nodeName))
	}
	out.family = family
	if len(errs) > 0 {
		return nil, &InvalidObjectError{Kind: "EndpointSlice", Namespace: s.Namespace, Name: s.Name,
			Service: out.service, Errs: errs}
	}
	if t, err := time.Parse(time.RFC3339Nano, s.Annotations[AnnotationTriggerTime]); err == nil {
		out.trigger = t
	}
	return out, nil
}

func endpointFromAPI(ep *discovery.Endpoint, ip netip.Addr, nodeName string) Endpoint {
	// The API's nil conditions mean "unknown", which consumers must read as ready and
	// serving; terminating defaults to false.
	ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
	serving := ep.Conditions.Serving == nil || *ep.Conditions.Serving
	terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
	out := Endpoint{
		Addr:        ip,
		Ready:       ready,
		Serving:     serving,
		Terminating: terminating,
	}
	if ep.NodeName != nil {
		out.NodeName = *ep.NodeName
		out.Local = out.NodeName == nodeName && nodeName != ""
	}
	if ep.Zone != nil {
		out.Zone = *ep.Zone
	}
	if h := ep.Hints; h != nil {
		for _, z := range h.ForZones {
			out.ZoneHints = append(out.ZoneHints, z.Name)
		}
		for _, n := range h.ForNodes {
			out.NodeHints = append(out.NodeHints, n.Name)
		}
	}
	return out
}
