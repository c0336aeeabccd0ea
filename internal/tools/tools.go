//go:build tools

// Package tools pins the project's dependencies in go.mod while the packages
// that use them are being written; it is never built.
package tools

import (
	_ "github.com/FerretDB/FerretDB/ferretdb"
	_ "github.com/Shopify/toxiproxy/v2"
	_ "github.com/aws/aws-lambda-go/lambda"
	_ "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	_ "github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	_ "github.com/awslabs/goformation/v7"
	_ "github.com/chromedp/chromedp"
	_ "github.com/gorilla/websocket"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.mongodb.org/mongo-driver/v2/mongo"
	_ "golang.org/x/time/rate"
)
