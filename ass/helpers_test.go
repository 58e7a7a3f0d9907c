package ass

import (
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func readFileBytes(path string) ([]byte, error) { return os.ReadFile(path) }

func testCounter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
