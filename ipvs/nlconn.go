package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nlConn is a netlink socket that sends many requests in one sendmsg. The kernel's
// netlink input (netlink_rcv_skb, used by rtnetlink, generic netlink and nfnetlink)
// processes every message of a send in order, each on its own, and goes on after one
// fails; it acks a message when the message asks for it (NLM_F_ACK) and always when it
// fails. So a batch asks for an ack on its last message only: the answers are the
// errors of the failed messages followed by the last message's ack, and a batch of
// hundreds of operations costs one system call each way instead of two per operation.
// That is what makes cold programming of 10,000 Services fast (see TestVMColdProgramming).
//
// Only requests without a reply other than the ack may be batched: a dump keeps
// running until it is read, and the kernel refuses a second one meanwhile.
//
// Callers hold mu around a request and its answers (lock).
type nlConn struct {
	mu     sync.Mutex
	closed bool
	file   *os.File
	rc     syscall.RawConn
	seq    uint32
	req    nlBuf // the request being built, reused
	recv   []byte
}

// nlConnTimeout bounds the wait for a batch's answers. The kernel answers before
// sendmsg returns, so only a lost ack (a receive buffer overflow) can make it wait.
const nlConnTimeout = 30 * time.Second

// openNLConn opens a netlink socket of the protocol inside ns (the caller's namespace
// when ns is netns.None()).
func openNLConn(ns netns.NsHandle, proto int) (*nlConn, error) {
	var fd int
	err := runInNetns(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	// A batch's error answers queue up until it is read; room for all of them means
	// none is dropped (which would lose the final ack too). SO_RCVBUFFORCE needs
	// CAP_NET_ADMIN, which kproxy has; otherwise the default, capped by the sysctl,
	// still holds a batch of maxBatchOps errors with capped acks.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 1<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
	}
	// Error answers without a copy of the request, but with the kernel's message
	// (extended ack) when it has one.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	c := &nlConn{file: os.NewFile(uintptr(fd), "netlink"), recv: make([]byte, 64<<10)}
	if c.rc, err = c.file.SyscallConn(); err != nil {
		c.file.Close()
		return nil, err
	}
	return c, nil
}

// lock takes the socket for one exchange and refuses it after close, with a
// *KernelError for op.
func (c *nlConn) lock(op string) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return &KernelError{Op: op, Errno: syscall.EBADF, Err: errors.New("handle closed")}
	}
	return nil
}

// close waits for an exchange in progress and closes the socket.
func (c *nlConn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.file.Close()
}

// nlMsgErr is the kernel's answer to one failed message of a batch.
type nlMsgErr struct {
	Errno syscall.Errno
	Msg   string // the extended ack's message, if any
}

func (e *nlMsgErr) Error() string {
	if e.Msg == "" {
		return e.Errno.Error()
	}
	return e.Errno.Error() + ": " + e.Msg
}

func (e *nlMsgErr) Unwrap() error { return e.Errno }

// exchange sends the n messages of b (built with the sequence numbers b.first to
// b.first+n-1, the last one asking for an ack) in one sendmsg and collects their
// errors: errs[i] is the error of the i-th message, nil for success. When the
// exchange itself fails, every message without an answer gets that error.
func (c *nlConn) exchange(b *nlBuf) []error {
	if b.n == 0 {
		return nil
	}
	errs := make([]error, b.n)
	last := b.first + uint32(b.n) - 1
	answered := 0
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil && i >= answered {
				errs[i] = err
			}
		}
		return errs
	}
	if err := c.send(b); err != nil {
		return fail(err)
	}
	for {
		buf, err := c.receive()
		if err != nil {
			// ENOBUFS: answers were dropped; which ones is unknown.
			return fail(fmt.Errorf("netlink: waiting for the answers of %d messages: %w", b.n, err))
		}
		done, err := parseAnswers(buf, b.first, last, errs, &answered)
		if err != nil {
			return fail(err)
		}
		if done {
			return errs
		}
	}
}

// send writes the messages of b in one sendmsg and arms the deadline for their
// answers.
func (c *nlConn) send(b *nlBuf) error {
	var sendErr error
	if err := c.rc.Write(func(fd uintptr) bool {
		sendErr = unix.Sendto(int(fd), b.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return sendErr != unix.EAGAIN
	}); err != nil {
		return err
	}
	if sendErr != nil {
		return fmt.Errorf("netlink sendmsg: %w", sendErr)
	}
	return c.file.SetReadDeadline(time.Now().Add(nlConnTimeout))
}

// receive reads one datagram of answers into c.recv.
func (c *nlConn) receive() ([]byte, error) {
	var nr int
	var recvErr error
	if err := c.rc.Read(func(fd uintptr) bool {
		nr, _, recvErr = unix.Recvfrom(int(fd), c.recv, 0)
		return recvErr != unix.EAGAIN
	}); err != nil {
		return nil, err
	}
	if recvErr != nil {
		return nil, fmt.Errorf("netlink recvmsg: %w", recvErr)
	}
	return c.recv[:nr], nil
}

// parseAnswers records the error answers in buf for the sequence numbers first..last
// in errs and reports whether the ack of last was among them. Answers to other
// sequence numbers (left over from an exchange that timed out) are skipped. answered
// advances to the index after the highest answer seen: the kernel answers in order,
// so every message before it has been processed.
func parseAnswers(buf []byte, first, last uint32, errs []error, answered *int) (bool, error) {
	done := false
	for len(buf) >= unix.NLMSG_HDRLEN {
		msg, rest, err := splitMsg(buf)
		if err != nil {
			return false, err
		}
		buf = rest
		typ, flags, seq := msgHeader(msg)
		if typ != unix.NLMSG_ERROR || seq < first || seq > last || len(msg) < unix.NLMSG_HDRLEN+4 {
			continue
		}
		i := int(seq - first)
		*answered = max(*answered, i+1)
		if e := int32(binary.NativeEndian.Uint32(msg[unix.NLMSG_HDRLEN:])); e != 0 {
			errs[i] = &nlMsgErr{Errno: syscall.Errno(-e), Msg: extAckMsg(msg, flags)}
		}
		if seq == last {
			done = true
		}
	}
	return done, nil
}

// splitMsg returns the first netlink message of buf and what follows it.
func splitMsg(buf []byte) (msg, rest []byte, err error) {
	l := int(binary.NativeEndian.Uint32(buf))
	if l < unix.NLMSG_HDRLEN || l > len(buf) {
		return nil, nil, fmt.Errorf("netlink: malformed answer (length %d of %d bytes)", l, len(buf))
	}
	return buf[:l], buf[min(nlAlign(l), len(buf)):], nil
}

// msgHeader returns a message's type, flags and sequence number.
func msgHeader(msg []byte) (typ, flags uint16, seq uint32) {
	return binary.NativeEndian.Uint16(msg[4:]), binary.NativeEndian.Uint16(msg[6:]), binary.NativeEndian.Uint32(msg[8:])
}

// extAckMsg returns the NLMSGERR_ATTR_MSG of an error answer sent with capped acks,
// or "".
func extAckMsg(msg []byte, flags uint16) string {
	if flags&unix.NLM_F_ACK_TLVS == 0 || flags&unix.NLM_F_CAPPED == 0 {
		return ""
	}
	// nlmsghdr, the error, then the request's header without its payload.
	off := unix.NLMSG_HDRLEN + 4 + unix.NLMSG_HDRLEN
	for off+4 <= len(msg) {
		l := int(binary.NativeEndian.Uint16(msg[off:]))
		typ := binary.NativeEndian.Uint16(msg[off+2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || off+l > len(msg) {
			break
		}
		if typ == unix.NLMSGERR_ATTR_MSG {
			v := msg[off+4 : off+l]
			for i, c := range v {
				if c == 0 {
					v = v[:i]
					break
				}
			}
			return string(v)
		}
		off += nlAlign(l)
	}
	return ""
}

func nlAlign(l int) int { return (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }

// nlBuf builds a batch of netlink messages in one buffer, without allocating per
// message: startMsg writes a header whose length endMsg patches, and nested
// attributes work the same way.
type nlBuf struct {
	buf   []byte
	first uint32 // sequence number of the first message
	n     int    // messages so far
	msg   int    // offset of the open message
	seq   *uint32
}

// reset empties the buffer for a batch on conn c.
func (b *nlBuf) reset(c *nlConn) {
	b.buf = b.buf[:0]
	b.n = 0
	b.seq = &c.seq
	b.first = c.seq + 1
}

// startMsg opens a request of the given type; flags get NLM_F_REQUEST added.
func (b *nlBuf) startMsg(typ, flags uint16) {
	*b.seq++
	b.msg = len(b.buf)
	b.buf = binary.NativeEndian.AppendUint32(b.buf, 0)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, flags|unix.NLM_F_REQUEST)
	b.buf = binary.NativeEndian.AppendUint32(b.buf, *b.seq)
	b.buf = binary.NativeEndian.AppendUint32(b.buf, 0) // port ID: the kernel fills it in
	b.n++
}

// endMsg closes the open message.
func (b *nlBuf) endMsg() {
	binary.NativeEndian.PutUint32(b.buf[b.msg:], uint32(len(b.buf)-b.msg))
}

// ackLast asks for an ack of the last message, which tells exchange the batch is done.
func (b *nlBuf) ackLast() {
	flags := binary.NativeEndian.Uint16(b.buf[b.msg+6:])
	binary.NativeEndian.PutUint16(b.buf[b.msg+6:], flags|unix.NLM_F_ACK)
}

// bytes appends raw bytes (a family header such as genlmsghdr or ifaddrmsg).
func (b *nlBuf) bytes(v ...byte) { b.buf = append(b.buf, v...) }

// attr appends an attribute with a raw value, padded to alignment.
func (b *nlBuf) attr(typ uint16, v []byte) {
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(4+len(v)))
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = append(b.buf, v...)
	for len(b.buf)%unix.NLA_ALIGNTO != 0 {
		b.buf = append(b.buf, 0)
	}
}

func (b *nlBuf) u8(typ uint16, v uint8) { b.attr(typ, []byte{v}) }

func (b *nlBuf) u16(typ uint16, v uint16) {
	var s [2]byte
	binary.NativeEndian.PutUint16(s[:], v)
	b.attr(typ, s[:])
}

func (b *nlBuf) u32(typ uint16, v uint32) {
	var s [4]byte
	binary.NativeEndian.PutUint32(s[:], v)
	b.attr(typ, s[:])
}

// be16 appends a 16-bit value in network byte order (ports).
func (b *nlBuf) be16(typ uint16, v uint16) {
	var s [2]byte
	binary.BigEndian.PutUint16(s[:], v)
	b.attr(typ, s[:])
}

// str appends a NUL-terminated string.
func (b *nlBuf) str(typ uint16, v string) {
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(4+len(v)+1))
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = append(b.buf, v...)
	b.buf = append(b.buf, 0)
	for len(b.buf)%unix.NLA_ALIGNTO != 0 {
		b.buf = append(b.buf, 0)
	}
}

// nest opens a nested attribute and returns its offset for endNest.
func (b *nlBuf) nest(typ uint16) int {
	off := len(b.buf)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, 0)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ|unix.NLA_F_NESTED)
	return off
}

func (b *nlBuf) endNest(off int) {
	binary.NativeEndian.PutUint16(b.buf[off:], uint16(len(b.buf)-off))
}

// dump sends the one dump request in b and calls fn with every message of the answer
// until NLMSG_DONE. An NLMSG_ERROR answer ends it with that error.
func (c *nlConn) dump(b *nlBuf, fn func(msg []byte) error) error {
	if b.n != 1 {
		return fmt.Errorf("netlink: a dump takes exactly one request, got %d", b.n)
	}
	if err := c.send(b); err != nil {
		return err
	}
	var fnErr error
	for {
		buf, err := c.receive()
		if err != nil {
			return fmt.Errorf("netlink: waiting for a dump: %w", err)
		}
		for len(buf) >= unix.NLMSG_HDRLEN {
			msg, rest, err := splitMsg(buf)
			if err != nil {
				return err
			}
			buf = rest
			typ, flags, seq := msgHeader(msg)
			if seq != b.first {
				continue // left over from an exchange that timed out
			}
			switch typ {
			case unix.NLMSG_DONE:
				return fnErr
			case unix.NLMSG_ERROR:
				if len(msg) >= unix.NLMSG_HDRLEN+4 {
					if e := int32(binary.NativeEndian.Uint32(msg[unix.NLMSG_HDRLEN:])); e != 0 {
						return &nlMsgErr{Errno: syscall.Errno(-e), Msg: extAckMsg(msg, flags)}
					}
				}
				return fnErr
			default:
				// Keep reading to the end even after fn failed: the rest of the dump
				// must not be left queued for the next request.
				if fnErr == nil {
					fnErr = fn(msg)
				}
			}
		}
	}
}
