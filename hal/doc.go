// Package hal gives thingd access to the gateway's hardware behind small
// interfaces: serial ports, the sensor line protocol and system facts. It
// never talks MQTT.
//
// The package is laid out by the repository foundation; its code arrives with
// the hardware issue.
package hal
