package fuzz

// A scenario is the fuzzer's view of a cluster: every field is a small choice (an index
// into a pool, a flag), so any byte string decodes to a plausible cluster and a
// hand-written scenario encodes to bytes the fuzzer can mutate further. One walk
// function describes the layout for both directions, so decoding an encoded scenario
// always gives it back.

// Limits keep one input cheap to render and trace.
const (
	maxServices  = 6
	maxPorts     = 3
	maxSlices    = 8
	maxSlicePort = 3
	maxEndpoints = 6
	maxExtIPs    = 2
	maxIngress   = 2
	maxRanges    = 2
)

type scenario struct {
	Node     nodeSpec
	Services []serviceSpec
	Slices   []sliceSpec
	// Order says whether slices are fed to the model before services, so that a
	// slice arriving before its Service is exercised too.
	SlicesFirst int
}

type nodeSpec struct {
	Addrs int // nodeAddrChoices
	Zone  int // zoneChoices
	// CIDRs: 0 none, 1 v4, 2 v6, 3 both.
	CIDRs int
}

type serviceSpec struct {
	NS, Name int // namespaceChoices, nameChoices
	Type     int // svcTypeChoices
	Families int // familyChoices
	// IPFrom, when non-zero, reuses the cluster IP of service IPFrom-1 (a conflict
	// the API would not allow, but the model must survive).
	IPFrom          int
	Ports           []portSpec
	ExternalIPs     []int // extIPChoices
	Ingress         []ingressSpec
	Ranges          []int // rangeChoices
	Affinity        int   // affinityChoices
	ETPLocal        int   // 0/1
	ITP             int   // 0 unset, 1 Cluster, 2 Local
	HealthCheck     int   // 0 none, 1 allocated, 2 outside the node-port range
	ProxyNameLabel  int   // 0/1: another proxy's service
	BadClusterIP    int   // 0/1: an unparseable cluster IP
	DuplicatePort   int   // 0/1: the first port twice
	NodePortInRange int   // 0 in range, 1 outside BuilderOptions.NodePortRange
}

type portSpec struct {
	Name, Proto, Port int // portNameChoices, protoChoices, portChoices
	// SharedNodePort, when non-zero, takes the node port of the first port of the
	// first service instead of a fresh one.
	SharedNodePort int
}

type ingressSpec struct {
	IP   int // ingressChoices
	Mode int // 0 unset, 1 VIP, 2 Proxy, 3 bogus
}

type sliceSpec struct {
	// Service is an index into Services; len(Services) and beyond name a Service
	// that does not exist.
	Service     int
	AddressType int // 0 IPv4, 1 IPv6, 2 FQDN
	Labels      int // sliceLabelChoices
	Ports       []slicePortSpec
	Endpoints   []endpointSpec
}

type slicePortSpec struct {
	Name, Proto, Port int // portNameChoices, protoChoices, targetPortChoices
	NilPort           int // 0/1
}

type endpointSpec struct {
	Where     int // addrWhereChoices
	Host      int // 0..7, the pod's host number
	Ready     int // tristate: 0 nil, 1 true, 2 false
	Serving   int
	Term      int
	Node      int // 0 nil, 1 this node, 2 another node
	Zone      int // zoneChoices
	Hints     int // hintChoices
	ExtraAddr int // 0/1: a second address (only the first counts)
}

// codec reads or writes one choice at a time.
type codec interface {
	// choose reads (decode) or writes (encode) *v, a value in [0, n).
	choose(v *int, n int)
	decoding() bool
}

// decoder turns bytes into choices; past the end every choice is 0, so short inputs
// make small clusters.
type decoder struct {
	data []byte
	pos  int
}

func (d *decoder) choose(v *int, n int) {
	if d.pos >= len(d.data) {
		*v = 0
		return
	}
	*v = int(d.data[d.pos]) % n
	d.pos++
}

func (d *decoder) decoding() bool { return true }

type encoder struct{ out []byte }

func (e *encoder) choose(v *int, n int) {
	e.out = append(e.out, byte(((*v%n)+n)%n))
}

func (e *encoder) decoding() bool { return false }

func decodeScenario(data []byte) *scenario {
	s := &scenario{}
	walkScenario(&decoder{data: data}, s)
	return s
}

func encodeScenario(s *scenario) []byte {
	e := &encoder{}
	walkScenario(e, s)
	return e.out
}

// count handles a list length: it reads or writes len(*list) (at most max) and, when
// decoding, makes the list that long.
func count[T any](c codec, list *[]T, max int) {
	n := len(*list)
	c.choose(&n, max+1)
	if c.decoding() {
		*list = make([]T, n)
	}
}

func walkScenario(c codec, s *scenario) {
	c.choose(&s.Node.Addrs, len(nodeAddrChoices))
	c.choose(&s.Node.Zone, len(zoneChoices))
	c.choose(&s.Node.CIDRs, 4)
	c.choose(&s.SlicesFirst, 2)
	count(c, &s.Services, maxServices)
	for i := range s.Services {
		walkService(c, &s.Services[i])
	}
	count(c, &s.Slices, maxSlices)
	for i := range s.Slices {
		walkSlice(c, &s.Slices[i])
	}
}

func walkService(c codec, s *serviceSpec) {
	c.choose(&s.NS, len(namespaceChoices))
	c.choose(&s.Name, len(nameChoices))
	c.choose(&s.Type, len(svcTypeChoices))
	c.choose(&s.Families, len(familyChoices))
	c.choose(&s.IPFrom, maxServices+1)
	count(c, &s.Ports, maxPorts)
	for i := range s.Ports {
		p := &s.Ports[i]
		c.choose(&p.Name, len(portNameChoices))
		c.choose(&p.Proto, len(protoChoices))
		c.choose(&p.Port, len(portChoices))
		c.choose(&p.SharedNodePort, 2)
	}
	count(c, &s.ExternalIPs, maxExtIPs)
	for i := range s.ExternalIPs {
		c.choose(&s.ExternalIPs[i], len(extIPChoices))
	}
	count(c, &s.Ingress, maxIngress)
	for i := range s.Ingress {
		c.choose(&s.Ingress[i].IP, len(ingressChoices))
		c.choose(&s.Ingress[i].Mode, 4)
	}
	count(c, &s.Ranges, maxRanges)
	for i := range s.Ranges {
		c.choose(&s.Ranges[i], len(rangeChoices))
	}
	c.choose(&s.Affinity, len(affinityChoices))
	c.choose(&s.ETPLocal, 2)
	c.choose(&s.ITP, 3)
	c.choose(&s.HealthCheck, 3)
	// The rare flags share one choice, so random bytes set each of them seldom.
	flags := s.ProxyNameLabel | s.BadClusterIP<<1 | s.DuplicatePort<<2 | s.NodePortInRange<<3
	c.choose(&flags, 64)
	if c.decoding() {
		// Only the low four bits mean something; values 16..63 are "no quirk", so
		// a random byte turns on a quirk about one time in four.
		if flags >= 16 {
			flags = 0
		}
		s.ProxyNameLabel, s.BadClusterIP, s.DuplicatePort, s.NodePortInRange = flags&1, flags>>1&1, flags>>2&1, flags>>3&1
	}
}

func walkSlice(c codec, s *sliceSpec) {
	c.choose(&s.Service, maxServices+1)
	c.choose(&s.AddressType, 3)
	c.choose(&s.Labels, len(sliceLabelChoices))
	count(c, &s.Ports, maxSlicePort)
	for i := range s.Ports {
		p := &s.Ports[i]
		c.choose(&p.Name, len(portNameChoices))
		c.choose(&p.Proto, len(protoChoices))
		c.choose(&p.Port, len(targetPortChoices))
		c.choose(&p.NilPort, 8) // 1 in 8: no port number
		if c.decoding() && p.NilPort != 1 {
			p.NilPort = 0
		}
	}
	count(c, &s.Endpoints, maxEndpoints)
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		c.choose(&e.Where, len(addrWhereChoices))
		c.choose(&e.Host, 8)
		c.choose(&e.Ready, 3)
		c.choose(&e.Serving, 3)
		c.choose(&e.Term, 3)
		c.choose(&e.Node, 3)
		c.choose(&e.Zone, len(zoneChoices))
		c.choose(&e.Hints, len(hintChoices))
		c.choose(&e.ExtraAddr, 2)
	}
}
