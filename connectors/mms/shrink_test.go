package mms_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/mms"
	"github.com/bubbled/bubbled/connectors/mms/mmscfake"
)

var (
	photoOnce sync.Once
	photo     []byte
)

// bigPhoto is a 4000x3000 (12 MP) JPEG with gradients and noise, about as
// heavy as a phone photo (several MB).
func bigPhoto(t testing.TB) []byte {
	photoOnce.Do(func() {
		img := image.NewYCbCr(image.Rect(0, 0, 4000, 3000), image.YCbCrSubsampleRatio420)
		r := rand.New(rand.NewPCG(1, 2))
		for y := 0; y < 3000; y++ {
			for x := 0; x < 4000; x++ {
				img.Y[y*img.YStride+x] = uint8((x/16+y/12)%256) ^ uint8(r.IntN(48))
			}
		}
		for i := range img.Cb {
			img.Cb[i], img.Cr[i] = uint8(i%251), uint8(128+r.IntN(16))
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 92}); err != nil {
			panic(err)
		}
		photo = b.Bytes()
	})
	if len(photo) < 3<<20 {
		t.Fatalf("test photo is only %d bytes", len(photo))
	}
	return photo
}

func TestShrinkImage(t *testing.T) {
	big := bigPhoto(t)
	out, media, err := mms.ShrinkImage(big, "image/jpeg", 300*1024)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 300*1024 || media != "image/jpeg" {
		t.Errorf("shrunk to %d bytes %s, want ≤ 307200 image/jpeg", len(out), media)
	}
	img, err := jpeg.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("shrunk image does not decode as JPEG: %v", err)
	}
	if b := img.Bounds(); b.Dx() > 1600 || b.Dx()*3 != b.Dy()*4 && (b.Dx()*3-b.Dy()*4) > 4 {
		t.Errorf("shrunk to %v", b)
	}
	small := []byte{0xFF, 0xD8, 1, 2}
	if out, _, err := mms.ShrinkImage(small, "image/jpeg", 100); err != nil || !bytes.Equal(out, small) {
		t.Errorf("small image changed: %v", err)
	}
	if _, _, err := mms.ShrinkImage(bytes.Repeat([]byte{1}, 2000), "video/mp4", 1000); !errors.Is(err, mms.ErrTooLarge) {
		t.Errorf("big video: %v", err)
	}
	if _, _, err := mms.ShrinkImage(bytes.Repeat([]byte{1}, 2000), "image/jpeg", 1000); err == nil {
		t.Error("garbage JPEG accepted")
	}
}

// TestNewSendReq: a 4 MB photo and text to three recipients is one
// m-send-req under max_size that the fake MMSC accepts; the photo in it
// still decodes as a JPEG.
func TestNewSendReq(t *testing.T) {
	f := mmscfake.Start(mmscfake.Options{})
	defer f.Close()
	c := newClient(t, mms.ClientConfig{MMSC: f.URL()})
	to := []string{"+15551230001", "+15551230002", "+15551230003"}
	req, err := mms.NewSendReq(to, "from Matrix", []mms.Attachment{{Name: "IMG_1.JPG", Media: "image/jpeg", Data: bigPhoto(t)}}, 300*1024)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := mms.Encode(req)
	if len(enc) > 300*1024 {
		t.Errorf("m-send-req is %d bytes", len(enc))
	}
	id, err := c.Send(context.Background(), req)
	if err != nil || id == "" {
		t.Fatalf("Send = %q, %v (problems %q)", id, err, f.Problems())
	}
	sent := f.SendReqs()
	if len(sent) != 1 || len(sent[0].To) != 3 || len(sent[0].Parts) != 3 {
		t.Fatalf("fake got %+v", sent)
	}
	if _, err := jpeg.Decode(bytes.NewReader(sent[0].Parts[1].Data)); err != nil {
		t.Errorf("sent photo does not decode: %v", err)
	}
	f.Refuse(0xE1, "")
	_, err = c.Send(context.Background(), req)
	var se *mms.SendError
	if !errors.As(err, &se) || se.Temporary() || se.Reason() == "" {
		t.Errorf("refusal: %v", err)
	}
	if _, err := mms.NewSendReq(to, "", []mms.Attachment{{Name: "v.mp4", Media: "video/mp4", Data: make([]byte, 400*1024)}}, 300*1024); !errors.Is(err, mms.ErrTooLarge) {
		t.Errorf("oversized video: %v", err)
	}
}

// BenchmarkShrink12MP shrinks a 12-megapixel JPEG to 300 KiB; peak-MB is
// the highest heap in use seen while it runs (sampled every 200 µs).
func BenchmarkShrink12MP(b *testing.B) {
	big := bigPhoto(b)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := mms.ShrinkImage(big, "image/jpeg", 300*1024); err != nil {
			b.Fatal(err)
		}
	}
	close(stop)
	<-done
	b.ReportMetric(float64(peak.Load()-min(peak.Load(), base.HeapInuse))/(1<<20), "peak-MB")
}
