package com.example;

/** A service nobody exports: GenericConsumer calls it to see the "not found" answer. */
public interface MissingService {
    String hello(String name);
}
