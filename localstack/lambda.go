package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
)

// maxEventBody is API Gateway's payload limit for a REST API (10 MB); the
// handlers set their own, smaller limits.
const maxEventBody = 10 << 20

// lambdaBridge serves HTTP by doing what API Gateway does in AWS: it turns
// each request into a REST API (v1) proxy event and runs the same
// httpadapter.ProxyWithContext path as the Lambda functions, so local
// traffic exercises the exact Lambda code path.
type lambdaBridge struct {
	adapter *httpadapter.HandlerAdapter
	stage   string
	reqs    atomic.Int64
}

func newLambdaBridge(h http.Handler) *lambdaBridge {
	return &lambdaBridge{adapter: httpadapter.New(h), stage: "local"}
}

func (b *lambdaBridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBody))
	if err != nil {
		httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.ETOOLARGE, "request body is larger than API Gateway's limit"))
		return
	}
	ev := events.APIGatewayProxyRequest{
		HTTPMethod:                      r.Method,
		Path:                            r.URL.Path,
		Resource:                        r.URL.Path,
		Headers:                         map[string]string{},
		MultiValueHeaders:               map[string][]string{},
		QueryStringParameters:           map[string]string{},
		MultiValueQueryStringParameters: map[string][]string{},
		RequestContext: events.APIGatewayProxyRequestContext{
			Stage:        b.stage,
			RequestID:    fmt.Sprintf("local-%d", b.reqs.Add(1)),
			HTTPMethod:   r.Method,
			Path:         r.URL.Path,
			RequestTime:  time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700"),
			Identity:     events.APIGatewayRequestIdentity{SourceIP: sourceIP(r.RemoteAddr)},
			ResourcePath: r.URL.Path,
		},
	}
	for k, vs := range r.Header {
		ev.Headers[k] = vs[len(vs)-1]
		ev.MultiValueHeaders[k] = vs
	}
	if r.Host != "" {
		ev.Headers["Host"] = r.Host
	}
	for k, vs := range r.URL.Query() {
		ev.QueryStringParameters[k] = vs[len(vs)-1]
		ev.MultiValueQueryStringParameters[k] = vs
	}
	if utf8.Valid(body) {
		ev.Body = string(body)
	} else {
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	}
	resp, err := b.adapter.ProxyWithContext(r.Context(), ev)
	if err != nil {
		httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.EINTERNAL, "internal error"))
		return
	}
	for k, vs := range resp.MultiValueHeaders {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	for k, v := range resp.Headers {
		if _, ok := resp.MultiValueHeaders[k]; !ok {
			w.Header().Set(k, v)
		}
	}
	out := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if out, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.EINTERNAL, "internal error"))
			return
		}
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// sourceIP returns the IP of a request's remote address (IPv4 or IPv6).
func sourceIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}
