package ipvs

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// errorAnswer builds the kernel's NLMSG_ERROR answer to seq, with capped acks and an
// extended ack message when msg is set.
func errorAnswer(seq uint32, errno syscall.Errno, msg string) []byte {
	var b nlBuf
	var s uint32 = seq - 1
	b.seq = &s
	flags := uint16(unix.NLM_F_CAPPED)
	if msg != "" {
		flags |= unix.NLM_F_ACK_TLVS
	}
	b.startMsg(unix.NLMSG_ERROR, flags)
	b.buf = binary.NativeEndian.AppendUint32(b.buf, uint32(-int32(errno)))
	b.buf = append(b.buf, make([]byte, unix.NLMSG_HDRLEN)...) // the request's header
	if msg != "" {
		b.str(unix.NLMSGERR_ATTR_MSG, msg)
	}
	b.endMsg()
	return b.buf
}

func TestParseAnswers(t *testing.T) {
	var buf []byte
	buf = append(buf, errorAnswer(3, syscall.EEXIST, "")...)           // stale: an earlier batch
	buf = append(buf, errorAnswer(11, syscall.ESRCH, "no service")...) // message 1 of 10..13
	buf = append(buf, errorAnswer(12, syscall.EINVAL, "")...)
	errs := make([]error, 4)
	answered := 0
	done, err := parseAnswers(buf, 10, 13, errs, &answered)
	if err != nil || done || answered != 3 {
		t.Fatalf("parseAnswers = %v, %v, answered %d; want not done yet, 3 answered", done, err, answered)
	}
	var me *nlMsgErr
	if errs[0] != nil || !errors.As(errs[1], &me) || me.Errno != syscall.ESRCH || me.Msg != "no service" ||
		!errors.Is(errs[2], syscall.EINVAL) || errs[3] != nil {
		t.Fatalf("errors %v", errs)
	}
	if got := errs[1].Error(); got != "no such process: no service" {
		t.Errorf("error text %q", got)
	}
	done, err = parseAnswers(errorAnswer(13, 0, ""), 10, 13, errs, &answered)
	if err != nil || !done || answered != 4 || errs[3] != nil {
		t.Errorf("final ack: done %v, err %v, answered %d, errs %v", done, err, answered, errs)
	}
	if _, err := parseAnswers([]byte{200, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 1, 1, errs, &answered); err == nil {
		t.Errorf("a truncated answer parsed")
	}
}

func TestNLBufAttributes(t *testing.T) {
	var b nlBuf
	var seq uint32 = 41
	b.seq = &seq
	b.first = 42
	b.startMsg(20, unix.NLM_F_CREATE)
	b.bytes(1, 2, 3, 4)
	n := b.nest(1)
	b.u16(2, 6)
	b.str(3, "rr")
	b.be16(4, 80)
	b.endNest(n)
	b.endMsg()
	b.ackLast()
	msgs, err := syscall.ParseNetlinkMessage(b.buf)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("ParseNetlinkMessage: %v, %d messages", err, len(msgs))
	}
	h := msgs[0].Header
	if h.Type != 20 || h.Seq != 42 || h.Flags != unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_ACK || int(h.Len) != len(b.buf) {
		t.Errorf("header %+v", h)
	}
	data := msgs[0].Data
	if string(data[:4]) != "\x01\x02\x03\x04" {
		t.Errorf("family header % x", data[:4])
	}
	outer := data[4:]
	if l, typ := binary.NativeEndian.Uint16(outer), binary.NativeEndian.Uint16(outer[2:]); int(l) != len(outer) || typ != 1|unix.NLA_F_NESTED {
		t.Fatalf("outer attribute length %d type %#x in % x", l, typ, outer)
	}
	inner := outer[4:]
	if len(inner) != 8+8+8 || binary.NativeEndian.Uint16(inner[4:]) != 6 || string(inner[12:15]) != "rr\x00" ||
		binary.BigEndian.Uint16(inner[20:]) != 80 {
		t.Errorf("nested attributes % x", inner)
	}
}
