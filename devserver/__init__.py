"""The local stack: moto's AWS emulation, the infra/ resources, the API and the SPA on one origin."""
