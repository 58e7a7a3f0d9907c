package amst_test

import (
	"context"
	"fmt"
	"io"
	"log"

	"github.com/dwcp/dwcp/amst"
)

// Example opens a session over four streams of an in-memory network, sends
// two messages and then bytes, and reads everything back in order.
func Example() {
	ctx := context.Background()
	cfg := amst.DefaultConfig()
	cfg.Streams = 4                        // fixed count; 0 would adapt
	cfg.Transport = amst.NewMemTransport() // amst.TCPTransport in production

	l, err := amst.Listen(ctx, "", cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	go func() {
		s, err := amst.Dial(ctx, l.Addr().String(), cfg, nil)
		if err != nil {
			log.Fatal(err)
		}
		s.SendMessage(ctx, []byte("page batch 1"))
		s.SendMessage(ctx, []byte("page batch 2"))
		io.WriteString(s, "raw tail")
		s.Close() // waits until the peer has everything
	}()

	s, err := l.Accept(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 2; i++ {
		msg, err := s.ReceiveMessage(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(msg))
	}
	tail, err := io.ReadAll(s)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(tail))
	// Output:
	// page batch 1
	// page batch 2
	// raw tail
}
