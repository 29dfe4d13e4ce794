package com.example.stream;

import org.apache.dubbo.common.stream.StreamObserver;

/** An interface service (no IDL) with Triple streaming methods, as Dubbo 3.3 declares them. */
public interface Greeter {
    /** Server streaming: one request, the answers through the observer. */
    void greetStream(String name, StreamObserver<String> answers);

    /** Bidirectional: requests through the returned observer, answers through the argument. */
    StreamObserver<String> chat(StreamObserver<String> answers);
}
