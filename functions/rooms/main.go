// Command rooms is the room API's Lambda function (provided.al2023, built as
// bootstrap): package api's room handlers behind API Gateway REST API (v1)
// proxy events. See docs/control-api.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/chatfleet/chatfleet/functions/api"
)

func main() {
	// Clients are built once per container, outside the handler.
	cfg, _, err := api.ConfigFromEnv(context.Background(), os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rooms:", err)
		os.Exit(1)
	}
	h, err := api.NewRoomAPI(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rooms:", err)
		os.Exit(1)
	}
	lambda.Start(httpadapter.New(h).ProxyWithContext)
}
