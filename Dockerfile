# One image for the sample services and the CLI:
#   /app/orders, /app/inventory, /app/payments, /app/eventkit
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./examples/orders ./examples/inventory ./examples/payments ./cmd/eventkit

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /app/
EXPOSE 8080
ENTRYPOINT []
