package com.example;

import java.util.Collections;
import java.util.HashMap;
import java.util.Map;

import org.apache.dubbo.rpc.Filter;
import org.apache.dubbo.rpc.Invocation;
import org.apache.dubbo.rpc.Invoker;
import org.apache.dubbo.rpc.Result;
import org.apache.dubbo.rpc.RpcException;

/**
 * Consumer filter ("capture", see META-INF/dubbo/org.apache.dubbo.rpc.Filter) that records the
 * attachments of the last response as they came off the wire.
 *
 * Needed because Dubbo 2.7.23 copies response attachments into RpcContext.getServerContext()
 * only in its cluster interceptor, and a reference with a single direct URL
 * (ReferenceConfig.setUrl("dubbo://...")) has no cluster: there RpcContext stays empty even
 * though the provider sent them.
 */
public class CaptureFilter implements Filter {
    private static volatile Map<String, Object> last = Collections.emptyMap();

    /** The attachments of the last completed response (empty before the first). */
    public static Map<String, Object> lastResponseAttachments() {
        return last;
    }

    @Override
    public Result invoke(Invoker<?> invoker, Invocation invocation) throws RpcException {
        last = Collections.emptyMap();
        Result result = invoker.invoke(invocation);
        return result.whenCompleteWithContext((r, t) -> {
            if (r != null && r.getObjectAttachments() != null) {
                last = new HashMap<>(r.getObjectAttachments());
            }
        });
    }
}
