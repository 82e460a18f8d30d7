package proxier

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Labels and annotations kube-proxy honours; kept identical so objects written for
// kube-proxy mean the same to kproxy.
const (
	// LabelServiceProxyName marks objects meant for another proxy implementation.
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	// LabelHeadless marks EndpointSlices of headless Services.
	LabelHeadless = "service.kubernetes.io/headless"
	// LabelServiceName links an EndpointSlice to its Service.
	LabelServiceName = "kubernetes.io/service-name"
	// AnnotationTriggerTime is when the change that produced an EndpointSlice happened.
	AnnotationTriggerTime = "endpoints.kubernetes.io/last-change-trigger-time"
	// LabelTopologyZone is the Node label that names its zone.
	LabelTopologyZone = "topology.kubernetes.io/zone"
)

// PortRange is an inclusive range of ports.
type PortRange struct{ Min, Max uint16 }

// Contains reports whether p lies in the range.
func (r PortRange) Contains(p int32) bool { return p >= int32(r.Min) && p <= int32(r.Max) }

// maxAffinityTimeout is the API's upper bound for ClientIP affinity (one day).
const maxAffinityTimeout = 86400

// ignoredService reports why a Service is none of this proxy's business, or "" if it
// is. These are not errors: kube-proxy skips such services silently too.
func ignoredService(svc *v1.Service) string {
	switch {
	case svc.Labels[LabelServiceProxyName] != "":
		return "managed by another service proxy"
	case svc.Spec.Type == v1.ServiceTypeExternalName:
		return "ExternalName service"
	case svc.Spec.ClusterIP == v1.ClusterIPNone:
		return "headless service"
	case svc.Spec.ClusterIP == "":
		return "no cluster IP allocated yet"
	}
	return ""
}

// servicePortsFromAPI converts a Service into one ServicePort per spec port, without
// endpoints. It validates everything the backends rely on and reports all problems at
// once; it returns (nil, nil) for services this proxy ignores.
func servicePortsFromAPI(svc *v1.Service, opts *BuilderOptions) ([]*ServicePort, error) {
	if ignoredService(svc) != "" {
		return nil, nil
	}
	name := ServiceName{Namespace: svc.Namespace, Name: svc.Name}
	var errs field.ErrorList
	spec := field.NewPath("spec")

	clusterIPs := svc.Spec.ClusterIPs
	if len(clusterIPs) == 0 {
		clusterIPs = []string{svc.Spec.ClusterIP}
	}
	ips, e := parseIPs(spec.Child("clusterIPs"), clusterIPs)
	errs = append(errs, e...)
	if len(ips) == 2 && FamilyOf(ips[0]) == FamilyOf(ips[1]) {
		errs = append(errs, field.Invalid(spec.Child("clusterIPs"), clusterIPs, "two cluster IPs of the same family"))
	}
	if len(ips) > 2 {
		errs = append(errs, field.TooMany(spec.Child("clusterIPs"), len(ips), 2))
	}
	externalIPs, e := parseIPs(spec.Child("externalIPs"), svc.Spec.ExternalIPs)
	errs = append(errs, e...)

	var ingress []LoadBalancerIngress
	ingPath := field.NewPath("status", "loadBalancer", "ingress")
	for i, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" {
			continue // hostname-only ingress: nothing for a node to program
		}
		ip, err := parseIP(ingPath.Index(i).Child("ip"), ing.IP)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mode := IPModeVIP
		if ing.IPMode != nil {
			switch *ing.IPMode {
			case v1.LoadBalancerIPModeVIP:
			case v1.LoadBalancerIPModeProxy:
				mode = IPModeProxy
			default:
				errs = append(errs, field.NotSupported(ingPath.Index(i).Child("ipMode"), *ing.IPMode,
					[]string{string(v1.LoadBalancerIPModeVIP), string(v1.LoadBalancerIPModeProxy)}))
			}
		}
		ingress = append(ingress, LoadBalancerIngress{IP: ip, Mode: mode})
	}

	var ranges []netip.Prefix
	for i, r := range svc.Spec.LoadBalancerSourceRanges {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			errs = append(errs, field.Invalid(spec.Child("loadBalancerSourceRanges").Index(i), r, "not a CIDR"))
			continue
		}
		ranges = append(ranges, p.Masked())
	}

	var affinity time.Duration
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		affinity = DefaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			t := *c.ClientIP.TimeoutSeconds
			if t <= 0 || t > maxAffinityTimeout {
				errs = append(errs, field.Invalid(spec.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), t,
					fmt.Sprintf("must be between 1 and %d", maxAffinityTimeout)))
			}
			affinity = time.Duration(t) * time.Second
		}
	}

	external := PolicyCluster
	if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
		external = PolicyLocal
	}
	internal := PolicyCluster
	if p := svc.Spec.InternalTrafficPolicy; p != nil && *p == v1.ServiceInternalTrafficPolicyLocal {
		internal = PolicyLocal
	}
	var hcPort uint16
	if p := svc.Spec.HealthCheckNodePort; p != 0 {
		if !opts.NodePortRange.Contains(p) {
			errs = append(errs, portRangeError(spec.Child("healthCheckNodePort"), p, opts.NodePortRange))
		} else if external == PolicyLocal {
			hcPort = uint16(p)
		}
	}

	out := make([]*ServicePort, 0, len(svc.Spec.Ports))
	type portKey struct {
		port  int32
		proto Protocol
	}
	seenPort := map[portKey]bool{}
	seenName := map[string]bool{}
	for i, p := range svc.Spec.Ports {
		path := spec.Child("ports").Index(i)
		proto, err := parseProtocol(path.Child("protocol"), p.Protocol)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if p.Port < 1 || p.Port > 65535 {
			errs = append(errs, portRangeError(path.Child("port"), p.Port, PortRange{1, 65535}))
			continue
		}
		if p.NodePort != 0 && !opts.NodePortRange.Contains(p.NodePort) {
			errs = append(errs, portRangeError(path.Child("nodePort"), p.NodePort, opts.NodePortRange))
			continue
		}
		if k := (portKey{p.Port, proto}); seenPort[k] {
			errs = append(errs, field.Duplicate(path, fmt.Sprintf("%d/%s", p.Port, proto)))
		} else {
			seenPort[k] = true
		}
		if k := p.Name + "/" + proto.String(); seenName[k] {
			errs = append(errs, field.Duplicate(path.Child("name"), p.Name))
		} else {
			seenName[k] = true
		}
		out = append(out, &ServicePort{
			Name:                     ServicePortName{ServiceName: name, Port: p.Name, Protocol: proto},
			ClusterIPs:               ips,
			Port:                     uint16(p.Port),
			NodePort:                 uint16(p.NodePort),
			ExternalIPs:              externalIPs,
			LoadBalancerIngress:      ingress,
			LoadBalancerSourceRanges: ranges,
			AffinityTimeout:          affinity,
			ExternalPolicy:           external,
			InternalPolicy:           internal,
			HealthCheckNodePort:      hcPort,
		})
	}
	if len(errs) > 0 {
		return nil, &InvalidObjectError{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Service: name, Errs: errs}
	}
	return out, nil
}

func portRangeError(path *field.Path, p int32, r PortRange) *field.Error {
	return field.Invalid(path, p, fmt.Sprintf("must be between %d and %d", r.Min, r.Max))
}

func parseProtocol(path *field.Path, p v1.Protocol) (Protocol, *field.Error) {
	switch p {
	case v1.ProtocolTCP, "":
		return ProtocolTCP, nil
	case v1.ProtocolUDP:
		return ProtocolUDP, nil
	case v1.ProtocolSCTP:
		return ProtocolSCTP, nil
	}
	return 0, field.NotSupported(path, p, []string{"TCP", "UDP", "SCTP"})
}

// parseIP accepts only canonical, unicast addresses: a service or endpoint pointing at
// loopback, link-local, multicast or the unspecified address is a mistake at best and an
// attempt to reach the node's own daemons at worst.
func parseIP(path *field.Path, s string) (netip.Addr, *field.Error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, field.Invalid(path, s, "not a valid IP address")
	}
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
		return netip.Addr{}, field.Invalid(path, s, "must be a unicast address that is not loopback or link-local")
	}
	return ip, nil
}

func parseIPs(path *field.Path, ss []string) ([]netip.Addr, field.ErrorList) {
	var errs field.ErrorList
	out := make([]netip.Addr, 0, len(ss))
	for i, s := range ss {
		ip, err := parseIP(path.Index(i), s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ip)
	}
	return out, errs
}
